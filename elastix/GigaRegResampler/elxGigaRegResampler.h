/* GigaRegResampler: elastix's final resampling (result.N.<format>) through the GigaReg core's
 * resample op on the GigaRegDevice (docs/elastix.md).
 *
 * elastix's DefaultResampler (MyStandardResampler: an itk::ResampleImageFilter) with
 * GenerateData replaced; everything around it is elastix's own: output grid (the fixed image,
 * or Size/Spacing/Origin/Direction), DefaultPixelValue, ResultImagePixelType (the cast),
 * ResultImageFormat, CompressResultImage, WriteResultImage.
 *
 *  - Interpolation: the ResampleInterpolator's B-spline order: 0 = nearest neighbour, anything
 *    else trilinear (the core has no higher-order B-spline sampling; an order > 1 is logged).
 *  - Transform: linear (Euler, affine, compositions): y = A x + t read off four points, sampled
 *    by the core directly; a cubic B-spline (alone or after a linear initial transform): its
 *    displacement u(x) = T(x) - x of one z-slab of the output grid at a time evaluated by the
 *    core (bspline_field, on the GPU with a CUDA backend; the field comes down once for ITK's
 *    inside test); any other transform: u from elastix's TransformPoint (OpenMP) on the host.
 *    The core samples with that field.
 *  - DefaultPixelValue where the mapped point is outside the moving image's buffer by ITK's rule
 *    (continuous index outside [-0.5, n - 0.5)); inside, the core samples with CLAMP (ITK's
 *    B-spline interpolator mirrors at the border: the half voxel at the edge can differ).
 *  - Keys: (GigaRegDevice "auto"|"cpu"|"cuda"|"cuda:N") as the metrics.
 *
 * TransformParameters files name elastix's standard (Resampler "DefaultResampler"), so every
 * elastix 5 transformix applies them. */
#ifndef elxGigaRegResampler_h
#define elxGigaRegResampler_h

#include "elxIncludes.h"
#include "MyStandardResampler/elxMyStandardResampler.h"
#include "itkBSplineInterpolateImageFunction.h"
#include "itkNearestNeighborInterpolateImageFunction.h"
#include "gigaregElxMetric.h"

namespace elastix
{

template< class TElastix >
class GigaRegResampler : public MyStandardResampler< TElastix >
{
public:
  typedef GigaRegResampler                          Self;
  typedef MyStandardResampler< TElastix >           Superclass;
  typedef itk::SmartPointer< Self >                 Pointer;
  typedef itk::SmartPointer< const Self >           ConstPointer;
  typedef typename Superclass::InputImageType       InputImageType;
  typedef typename Superclass::OutputImageType      OutputImageType;
  typedef typename Superclass::TransformType        TransformType;
  typedef typename Superclass::InterpolatorType     InterpolatorType;
  typedef typename ResamplerBase< TElastix >::ParameterMapType ParameterMapType;
  typedef typename InterpolatorType::CoordRepType   CoordRepType;
  itkNewMacro( Self );
  itkTypeMacro( GigaRegResampler, MyStandardResampler );
  elxClassNameMacro( "GigaRegResampler" );

  /** ResamplerBase::WriteToFile with the standard resampler name. */
  void WriteToFile( void ) const override
  {
    xl::xout[ "transpar" ] << std::endl << "// Resampler specific" << std::endl;
    xl::xout[ "transpar" ] << "// (written by GigaRegResampler)" << std::endl;
    xl::xout[ "transpar" ] << "(Resampler \"DefaultResampler\")" << std::endl;
    xl::xout[ "transpar" ] << "(DefaultPixelValue "
                           << static_cast< double >( this->GetAsITKBaseType()->GetDefaultPixelValue() ) << ")"
                           << std::endl;
    std::string format = "mhd", pixelType = "short", compress = "false";
    this->m_Configuration->ReadParameter( format, "ResultImageFormat", 0, false );
    this->m_Configuration->ReadParameter( pixelType, "ResultImagePixelType", 0, false );
    this->m_Configuration->ReadParameter( compress, "CompressResultImage", 0, false );
    xl::xout[ "transpar" ] << "(ResultImageFormat \"" << format << "\")" << std::endl;
    xl::xout[ "transpar" ] << "(ResultImagePixelType \"" << pixelType << "\")" << std::endl;
    xl::xout[ "transpar" ] << "(CompressResultImage \"" << compress << "\")" << std::endl;
  }

  void CreateTransformParametersMap( ParameterMapType * paramsMap ) const override
  {
    this->ResamplerBase< TElastix >::CreateTransformParametersMap( paramsMap );
    ( *paramsMap )[ "Resampler" ] = std::vector< std::string >( 1, "DefaultResampler" );
  }

protected:
  GigaRegResampler() {}
  ~GigaRegResampler() override {}

  /** The interpolation the core applies: nearest for a B-spline / nearest-neighbour interpolator of
   * order 0, else trilinear. Sets order to the interpolator's B-spline order (-1: not a B-spline one). */
  gr_interp CoreInterpolation( int & order ) const
  {
    typedef itk::BSplineInterpolateImageFunction< InputImageType, CoordRepType, double > BSplineType;
    typedef itk::NearestNeighborInterpolateImageFunction< InputImageType, CoordRepType > NearestType;
    const InterpolatorType * I = this->GetInterpolator();
    order = -1;
    if( const BSplineType * b = dynamic_cast< const BSplineType * >( I ) )
    {
      order = static_cast< int >( b->GetSplineOrder() );
      return order == 0 ? GR_INTERP_NEAREST : GR_INTERP_LINEAR;
    }
    if( dynamic_cast< const NearestType * >( I ) ) { order = 0; return GR_INTERP_NEAREST; }
    return GR_INTERP_LINEAR;
  }

  void GenerateData() override
  {
    const auto tStart = std::chrono::steady_clock::now();
    this->AllocateOutputs();
    OutputImageType *      out = this->GetOutput();
    const InputImageType * in  = this->GetInput();
    const TransformType *  T   = this->GetTransform();
    if( !in || !T ) { gigaregCheck( GR_ERR_INVALID_ARG, "GigaRegResampler: no input image or transform" ); }
    const float dflt = static_cast< float >( this->GetDefaultPixelValue() );

    std::string device = "auto";
    this->m_Configuration->ReadParameter( device, "GigaRegDevice", 0, false );
    gr_device_kind kind;
    int            index = 0;
    gigaregCheck( gr_device_parse( device.c_str(), &kind, &index ), "GigaRegDevice" );
    gr_backend * be = nullptr;
    gigaregCheck( gr_backend_create( kind, index, 0, &be ), "backend" );
    struct BeGuard { gr_backend * be; std::vector< float * > bufs;
      ~BeGuard() { for( float * p : bufs ) { if( p ) { be->ops->free( be, p ); } } gr_backend_destroy( be ); } } guard{ be, {} };
    auto alloc = [&]( int64_t n ) -> float * {
      float * p = static_cast< float * >( be->ops->alloc( be, static_cast< size_t >( n ) * sizeof( float ) ) );
      if( !p ) { gigaregCheck( GR_ERR_NOMEM, "GigaRegResampler allocation" ); }
      guard.bufs.push_back( p );
      return p;
    };

    int             order  = -1;
    const gr_interp interp = this->CoreInterpolation( order );

    /* moving (input) grid and voxels */
    gr_grid mg;
    int64_t mn = 0;
    gigaregGrid( in, mg, mn );
    float * dM = alloc( mn );
    gigaregCheck( be->ops->upload( be, dM, in->GetBufferPointer(), static_cast< size_t >( mn ) * sizeof( float ) ),
      "upload" );

    /* output grid, processed in z-slabs of at most ~32 M voxels */
    const gr_geometry og = gigaregGeometry( out );
    const int64_t nx = og.size[ 0 ], ny = og.size[ 1 ], nz = og.size[ 2 ], plane = nx * ny;
    const int64_t slabPlanes = std::max< int64_t >( 1, std::min< int64_t >( nz, ( int64_t( 32 ) << 20 ) / std::max< int64_t >( plane, 1 ) ) );
    const bool    linear     = T->IsLinear();
    float *       dOut       = alloc( slabPlanes * plane );
    float *       dU         = linear ? nullptr : alloc( 3 * slabPlanes * plane );
    std::vector< float > hostU( linear ? 0 : static_cast< size_t >( 3 * slabPlanes * plane ) );
    std::vector< unsigned char > inside( static_cast< size_t >( slabPlanes * plane ) );
    float * result = out->GetBufferPointer();

    gr_affine A;
    if( linear )
    {
      typename TransformType::InputPointType pts[ 4 ];
      for( int c = 0; c < 4; ++c )
      {
        pts[ c ].Fill( 0.0 );
        if( c > 0 ) { pts[ c ][ c - 1 ] = 1.0; }
      }
      typename TransformType::OutputPointType y[ 4 ];
      for( int c = 0; c < 4; ++c ) { y[ c ] = T->TransformPoint( pts[ c ] ); }
      for( int r = 0; r < 3; ++r )
      {
        for( int c = 0; c < 3; ++c ) { A.m[ r * 4 + c ] = y[ c + 1 ][ r ] - y[ 0 ][ r ]; }
        A.m[ r * 4 + 3 ] = y[ 0 ][ r ];
      }
    }
    /* ITK's inside rule on the moving buffer: continuous index in [-0.5, n - 0.5) */
    auto isInside = [&]( const double y[ 3 ] ) -> bool {
      for( int a = 0; a < 3; ++a )
      {
        const double c = mg.p2i[ a * 4 ] * y[ 0 ] + mg.p2i[ a * 4 + 1 ] * y[ 1 ] + mg.p2i[ a * 4 + 2 ] * y[ 2 ] + mg.p2i[ a * 4 + 3 ];
        if( !( c >= -0.5 && c < static_cast< double >( mg.n[ a ] ) - 0.5 ) ) { return false; }
      }
      return true;
    };
    double tField = 0, tCore = 0;
    double * dCoef = nullptr; /* a B-spline's coefficients on the backend (core field) */
    bool     coreBSpline = false;
    for( int64_t z0 = 0; z0 < nz; z0 += slabPlanes )
    {
      const int64_t sz = std::min( slabPlanes, nz - z0 ), sn = sz * plane;
      gr_geometry sg = og;
      sg.size[ 2 ]   = sz;
      const double idx[ 3 ] = { 0, 0, static_cast< double >( z0 ) };
      gr_geometry_index_to_phys( &og, idx, sg.origin );
      gr_grid g;
      gigaregCheck( gr_grid_from_geometry( &sg, &g ), "grid" );
      const auto t0 = std::chrono::steady_clock::now();
      gr_bspline    bs;
      int64_t       G  = 0;
      const double * hc = nullptr;
      coreBSpline = !linear && be->ops->bspline_field && gigaregBSplineOf( T, g, bs, G, &hc );
      if( coreBSpline )
      {
        if( !dCoef )
        {
          dCoef = reinterpret_cast< double * >( alloc( 6 * G ) ); /* 3 G doubles, freed with the other buffers */
          gigaregCheck( be->ops->upload( be, dCoef, hc, static_cast< size_t >( 3 * G ) * sizeof( double ) ), "upload" );
        }
        bs.coef = dCoef;
        gigaregCheck( be->ops->bspline_field( be, &g, &bs, dU ), "B-spline field" );
        gigaregCheck( be->ops->download( be, hostU.data(), dU, static_cast< size_t >( 3 * sn ) * sizeof( float ) ), "download" );
      }
#pragma omp parallel for schedule(static)
      for( int64_t k = 0; k < sz; ++k )
      {
        for( int64_t j = 0; j < ny; ++j )
        {
          for( int64_t i = 0; i < nx; ++i )
          {
            const int64_t v = ( k * ny + j ) * nx + i;
            double        p[ 3 ], y[ 3 ];
            gigaregI2P( g, (double)i, (double)j, (double)k, p );
            if( linear )
            {
              for( int r = 0; r < 3; ++r ) { y[ r ] = A.m[ r * 4 ] * p[ 0 ] + A.m[ r * 4 + 1 ] * p[ 1 ] + A.m[ r * 4 + 2 ] * p[ 2 ] + A.m[ r * 4 + 3 ]; }
            }
            else if( coreBSpline )
            {
              for( int a = 0; a < 3; ++a ) { y[ a ] = p[ a ] + static_cast< double >( hostU[ static_cast< size_t >( a * sn + v ) ] ); }
            }
            else
            {
              typename TransformType::InputPointType x;
              x[ 0 ] = p[ 0 ]; x[ 1 ] = p[ 1 ]; x[ 2 ] = p[ 2 ];
              const typename TransformType::OutputPointType yy = T->TransformPoint( x );
              for( int a = 0; a < 3; ++a )
              {
                y[ a ] = yy[ a ];
                hostU[ static_cast< size_t >( a * sn + v ) ] = static_cast< float >( yy[ a ] - p[ a ] );
              }
            }
            inside[ static_cast< size_t >( v ) ] = isInside( y ) ? 1 : 0;
          }
        }
      }
      const auto t1 = std::chrono::steady_clock::now();
      if( !linear && !coreBSpline )
      {
        gigaregCheck( be->ops->upload( be, dU, hostU.data(), static_cast< size_t >( 3 * sn ) * sizeof( float ) ), "upload" );
      }
      gigaregCheck( be->ops->resample( be, &g, dOut, &mg, dM, 1, linear ? &A : nullptr, linear ? nullptr : dU, interp,
                                       GR_BOUNDARY_CLAMP ), "resample" );
      float * dst = result + z0 * plane;
      gigaregCheck( be->ops->download( be, dst, dOut, static_cast< size_t >( sn ) * sizeof( float ) ), "download" );
      for( int64_t v = 0; v < sn; ++v )
      {
        if( !inside[ static_cast< size_t >( v ) ] ) { dst[ v ] = dflt; }
      }
      const auto t2 = std::chrono::steady_clock::now();
      tField += std::chrono::duration< double >( t1 - t0 ).count();
      tCore += std::chrono::duration< double >( t2 - t1 ).count();
    }
    elxout << "  GigaRegResampler: backend " << be->ops->name << " (GigaRegDevice \"" << device << "\"), "
           << ( interp == GR_INTERP_NEAREST ? "nearest neighbour" : "trilinear" );
    if( order > 1 ) { elxout << " (interpolator B-spline order " << order << " requested; the core samples trilinearly)"; }
    elxout << ", " << ( linear ? "linear transform" : coreBSpline ? "B-spline field in the core per slab" : "dense field per slab" )
           << ", " << nx << "x" << ny << "x" << nz << ": "
           << ( linear ? "inside test " : coreBSpline ? "field and inside test " : "transform points " ) << tField << " s, core resample " << tCore
           << " s, total " << std::chrono::duration< double >( std::chrono::steady_clock::now() - tStart ).count()
           << " s" << std::endl;
  }

private:
  GigaRegResampler( const Self & ) = delete;
  void operator=( const Self & ) = delete;
};

} // end namespace elastix

#endif
