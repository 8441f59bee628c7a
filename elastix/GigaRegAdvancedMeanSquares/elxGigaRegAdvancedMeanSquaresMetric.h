/* GigaRegAdvancedMeanSquares: elastix's AdvancedMeanSquaresMetric evaluated by the GigaReg core on every
 * fixed voxel (elastix/common/gigaregElxMetric.h, docs/elastix.md). */
#ifndef elxGigaRegAdvancedMeanSquaresMetric_h
#define elxGigaRegAdvancedMeanSquaresMetric_h

#include "elxIncludes.h"
#include "AdvancedMeanSquares/elxAdvancedMeanSquaresMetric.h"
#include "gigaregElxMetric.h"

namespace elastix
{

template< class TElastix >
class GigaRegAdvancedMeanSquaresMetric :
  public GigaRegMetric< TElastix, AdvancedMeanSquaresMetric< TElastix > >
{
public:
  typedef GigaRegAdvancedMeanSquaresMetric                                    Self;
  typedef GigaRegMetric< TElastix, AdvancedMeanSquaresMetric< TElastix > > Superclass;
  typedef itk::SmartPointer< Self >                          Pointer;
  typedef itk::SmartPointer< const Self >                    ConstPointer;
  itkNewMacro( Self );
  itkTypeMacro( GigaRegAdvancedMeanSquaresMetric, AdvancedMeanSquaresMetric );
  elxClassNameMacro( "GigaRegAdvancedMeanSquares" );

protected:
  GigaRegAdvancedMeanSquaresMetric() {}
  ~GigaRegAdvancedMeanSquaresMetric() override {}

  /* MSE on raw intensities (the core: mean of (W - F)^2 over valid voxels);
   * UseNormalization multiplies by elastix's factor 100 / range^2. */
  void GigaRegSpec( gr_metric_spec & spec, double & scale, int & normalise ) const override
  {
    spec.kind = GR_METRIC_MSE;
    scale     = this->GetUseNormalization() ? this->m_NormalizationFactor : 1.0;
    normalise = 0;
  }

private:
  GigaRegAdvancedMeanSquaresMetric( const Self & ) = delete;
  void operator=( const Self & ) = delete;
};

} // end namespace elastix

#endif
