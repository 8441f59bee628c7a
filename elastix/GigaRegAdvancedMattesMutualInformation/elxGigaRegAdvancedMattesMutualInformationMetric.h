/* GigaRegAdvancedMattesMutualInformation: elastix's AdvancedMattesMutualInformationMetric evaluated by the GigaReg core on every
 * fixed voxel (elastix/common/gigaregElxMetric.h, docs/elastix.md). */
#ifndef elxGigaRegAdvancedMattesMutualInformationMetric_h
#define elxGigaRegAdvancedMattesMutualInformationMetric_h

#include "elxIncludes.h"
#include "AdvancedMattesMutualInformation/elxAdvancedMattesMutualInformationMetric.h"
#include "gigaregElxMetric.h"

namespace elastix
{

template< class TElastix >
class GigaRegAdvancedMattesMutualInformationMetric :
  public GigaRegMetric< TElastix, AdvancedMattesMutualInformationMetric< TElastix > >
{
public:
  typedef GigaRegAdvancedMattesMutualInformationMetric                                    Self;
  typedef GigaRegMetric< TElastix, AdvancedMattesMutualInformationMetric< TElastix > > Superclass;
  typedef itk::SmartPointer< Self >                          Pointer;
  typedef itk::SmartPointer< const Self >                    ConstPointer;
  itkNewMacro( Self );
  itkTypeMacro( GigaRegAdvancedMattesMutualInformationMetric, AdvancedMattesMutualInformationMetric );
  elxClassNameMacro( "GigaRegAdvancedMattesMutualInformation" );

protected:
  GigaRegAdvancedMattesMutualInformationMetric() {}
  ~GigaRegAdvancedMattesMutualInformationMetric() override {}

  /* -MI, Parzen windows as elastix's defaults: fixed kernel B-spline order 0,
   * moving kernel order 3, NumberOfHistogramBins bins over the level images' ranges. */
  void GigaRegSpec( gr_metric_spec & spec, double & scale, int & normalise ) const override
  {
    if( this->GetFixedKernelBSplineOrder() != 0 || this->GetMovingKernelBSplineOrder() != 3 )
    {
      itkExceptionMacro( "GigaRegAdvancedMattesMutualInformation supports FixedKernelBSplineOrder 0 and "
                         "MovingKernelBSplineOrder 3 only (elastix's defaults)" );
    }
    const unsigned long fb = const_cast< Self * >( this )->GetNumberOfFixedHistogramBins();
    const unsigned long mb = const_cast< Self * >( this )->GetNumberOfMovingHistogramBins();
    if( fb != mb )
    {
      itkExceptionMacro( "GigaRegAdvancedMattesMutualInformation needs NumberOfFixedHistogramBins == "
                         "NumberOfMovingHistogramBins (got " << fb << ", " << mb << ")" );
    }
    spec.kind    = GR_METRIC_MI;
    spec.mi_bins = static_cast< int >( fb );
    scale        = 1.0;
    normalise    = 0;
  }

private:
  GigaRegAdvancedMattesMutualInformationMetric( const Self & ) = delete;
  void operator=( const Self & ) = delete;
};

} // end namespace elastix

#endif
