/* GigaRegLocalNormalizedCorrelation: elastix's AdvancedNormalizedCorrelationMetric evaluated by the GigaReg core on every
 * fixed voxel (elastix/common/gigaregElxMetric.h, docs/elastix.md). */
#ifndef elxGigaRegLocalNormalizedCorrelationMetric_h
#define elxGigaRegLocalNormalizedCorrelationMetric_h

#include "elxIncludes.h"
#include "AdvancedNormalizedCorrelation/elxAdvancedNormalizedCorrelationMetric.h"
#include "gigaregElxMetric.h"

namespace elastix
{

template< class TElastix >
class GigaRegLocalNormalizedCorrelationMetric :
  public GigaRegMetric< TElastix, AdvancedNormalizedCorrelationMetric< TElastix > >
{
public:
  typedef GigaRegLocalNormalizedCorrelationMetric                                    Self;
  typedef GigaRegMetric< TElastix, AdvancedNormalizedCorrelationMetric< TElastix > > Superclass;
  typedef itk::SmartPointer< Self >                          Pointer;
  typedef itk::SmartPointer< const Self >                    ConstPointer;
  itkNewMacro( Self );
  itkTypeMacro( GigaRegLocalNormalizedCorrelationMetric, AdvancedNormalizedCorrelationMetric );
  elxClassNameMacro( "GigaRegLocalNormalizedCorrelation" );

protected:
  GigaRegLocalNormalizedCorrelationMetric() {}
  ~GigaRegLocalNormalizedCorrelationMetric() override {}

  /* -LNCC (box window of radius GigaRegLNCCRadius voxels, default 2) on
   * intensities mapped to [0, 1] (the core's epsilon is absolute). */
  void GigaRegSpec( gr_metric_spec & spec, double & scale, int & normalise ) const override
  {
    spec.kind        = GR_METRIC_LNCC;
    spec.lncc_radius = this->m_Radius;
    scale            = 1.0;
    normalise        = 1;
  }

public:
  void BeforeEachResolution( void ) override
  {
    this->Superclass::BeforeEachResolution();
    const unsigned int level = ( this->m_Registration->GetAsITKBaseType() )->GetCurrentLevel();
    int r = 2;
    this->GetConfiguration()->ReadParameter( r, "GigaRegLNCCRadius", this->GetComponentLabel(), level, 0 );
    if( r < 1 ) { itkExceptionMacro( "GigaRegLNCCRadius must be >= 1, got " << r ); }
    this->m_Radius = r;
  }

protected:
  int m_Radius = 2;

private:
  GigaRegLocalNormalizedCorrelationMetric( const Self & ) = delete;
  void operator=( const Self & ) = delete;
};

} // end namespace elastix

#endif
