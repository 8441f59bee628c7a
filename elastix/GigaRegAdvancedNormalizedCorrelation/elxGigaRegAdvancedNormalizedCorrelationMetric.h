/* GigaRegAdvancedNormalizedCorrelation: elastix's AdvancedNormalizedCorrelationMetric evaluated by the GigaReg core on every
 * fixed voxel (elastix/common/gigaregElxMetric.h, docs/elastix.md). */
#ifndef elxGigaRegAdvancedNormalizedCorrelationMetric_h
#define elxGigaRegAdvancedNormalizedCorrelationMetric_h

#include "elxIncludes.h"
#include "AdvancedNormalizedCorrelation/elxAdvancedNormalizedCorrelationMetric.h"
#include "gigaregElxMetric.h"

namespace elastix
{

template< class TElastix >
class GigaRegAdvancedNormalizedCorrelationMetric :
  public GigaRegMetric< TElastix, AdvancedNormalizedCorrelationMetric< TElastix > >
{
public:
  typedef GigaRegAdvancedNormalizedCorrelationMetric                                    Self;
  typedef GigaRegMetric< TElastix, AdvancedNormalizedCorrelationMetric< TElastix > > Superclass;
  typedef itk::SmartPointer< Self >                          Pointer;
  typedef itk::SmartPointer< const Self >                    ConstPointer;
  itkNewMacro( Self );
  itkTypeMacro( GigaRegAdvancedNormalizedCorrelationMetric, AdvancedNormalizedCorrelationMetric );
  elxClassNameMacro( "GigaRegAdvancedNormalizedCorrelation" );

protected:
  GigaRegAdvancedNormalizedCorrelationMetric() {}
  ~GigaRegAdvancedNormalizedCorrelationMetric() override {}

  /* -NCC with the means subtracted (elastix's default SubtractMean "true"). */
  void GigaRegSpec( gr_metric_spec & spec, double & scale, int & normalise ) const override
  {
    if( !this->GetSubtractMean() )
    {
      itkExceptionMacro( "GigaRegAdvancedNormalizedCorrelation supports (SubtractMean \"true\") only" );
    }
    spec.kind = GR_METRIC_NCC;
    scale     = 1.0;
    normalise = 0;
  }

private:
  GigaRegAdvancedNormalizedCorrelationMetric( const Self & ) = delete;
  void operator=( const Self & ) = delete;
};

} // end namespace elastix

#endif
