/* GigaRegResampleInterpolator: the final-resampling interpolation of the GigaReg core
 * (docs/elastix.md): trilinear, or nearest neighbour for (FinalBSplineInterpolationOrder 0).
 *
 * elastix's FinalBSplineInterpolator (BSplineResampleInterpolator) with the B-spline order
 * limited to what the core samples: order 0 stays 0 (nearest, label maps), every other order
 * becomes 1 (trilinear). With (Resampler "GigaRegResampler") the core does the sampling on the
 * GigaRegDevice; with elastix's DefaultResampler this component is an ITK interpolator of the
 * same order, so both resamplers give the same image (up to the border half voxel).
 *
 * TransformParameters files name elastix's standard component,
 * (ResampleInterpolator "FinalBSplineInterpolator"), with the FinalBSplineInterpolationOrder of
 * the parameter file (the requested order, default 3): any elastix 5 transformix applies them. */
#ifndef elxGigaRegResampleInterpolator_h
#define elxGigaRegResampleInterpolator_h

#include "elxIncludes.h"
#include "BSplineResampleInterpolator/elxBSplineResampleInterpolator.h"

namespace elastix
{

template< class TElastix >
class GigaRegResampleInterpolator : public BSplineResampleInterpolator< TElastix >
{
public:
  typedef GigaRegResampleInterpolator             Self;
  typedef BSplineResampleInterpolator< TElastix > Superclass;
  typedef itk::SmartPointer< Self >               Pointer;
  typedef itk::SmartPointer< const Self >         ConstPointer;
  typedef typename Superclass::ParameterMapType   ParameterMapType;
  itkNewMacro( Self );
  itkTypeMacro( GigaRegResampleInterpolator, BSplineResampleInterpolator );
  elxClassNameMacro( "GigaRegResampleInterpolator" );

  /** Reads FinalBSplineInterpolationOrder (default 3); the order used is 0 for 0, else 1. */
  void BeforeRegistration( void ) override
  {
    unsigned int order = 3;
    this->m_Configuration->ReadParameter( order, "FinalBSplineInterpolationOrder", 0 );
    this->m_RequestedOrder = order;
    this->SetSplineOrder( order == 0 ? 0 : 1 );
    if( order > 1 )
    {
      elxout << "  GigaRegResampleInterpolator: FinalBSplineInterpolationOrder " << order
             << " requested; the GigaReg core resamples trilinearly (order 1)" << std::endl;
    }
  }

  /** transformix (a file naming this component): the same order rule. */
  void ReadFromFile( void ) override
  {
    this->Superclass::ReadFromFile();
    this->m_RequestedOrder = this->GetSplineOrder();
    this->SetSplineOrder( this->m_RequestedOrder == 0 ? 0 : 1 );
  }

  unsigned int GetRequestedOrder( void ) const { return this->m_RequestedOrder; }

  /** The standard name and the requested order, so that transformix applies the file. */
  void WriteToFile( void ) const override
  {
    xl::xout[ "transpar" ] << "\n// ResampleInterpolator specific" << std::endl;
    xl::xout[ "transpar" ] << "// (written by GigaRegResampleInterpolator, which resampled with order "
                           << this->GetSplineOrder() << ")" << std::endl;
    xl::xout[ "transpar" ] << "(ResampleInterpolator \"FinalBSplineInterpolator\")" << std::endl;
    xl::xout[ "transpar" ] << "(FinalBSplineInterpolationOrder " << this->m_RequestedOrder << ")" << std::endl;
  }

  void CreateTransformParametersMap( ParameterMapType * paramsMap ) const override
  {
    this->Superclass::CreateTransformParametersMap( paramsMap );
    std::ostringstream os;
    os << this->m_RequestedOrder;
    ( *paramsMap )[ "ResampleInterpolator" ]           = std::vector< std::string >( 1, "FinalBSplineInterpolator" );
    ( *paramsMap )[ "FinalBSplineInterpolationOrder" ] = std::vector< std::string >( 1, os.str() );
  }

protected:
  GigaRegResampleInterpolator() {}
  ~GigaRegResampleInterpolator() override {}
  unsigned int m_RequestedOrder = 3;

private:
  GigaRegResampleInterpolator( const Self & ) = delete;
  void operator=( const Self & ) = delete;
};

} // end namespace elastix

#endif
