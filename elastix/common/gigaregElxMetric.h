/* GigaReg elastix metrics: the shared machinery (docs/elastix.md).
 *
 * GigaRegMetric<TElastix, TBase> derives from one of elastix's own metric
 * components (TBase = elx::AdvancedMattesMutualInformationMetric<TElastix>, ...),
 * so every key that component reads is read the same way (NumberOfHistogramBins,
 * SubtractMean, UseNormalization, masks, pyramids, samplers for ASGD's parameter
 * estimation, ...). It replaces only the evaluation: GetValue, GetDerivative and
 * GetValueAndDerivative call the GigaReg core's fused metric op (backend.h) on
 * EVERY voxel of the fixed image of the current resolution (full sampling):
 *
 *  - linear transforms (Euler, Affine, Translation, and compositions of them):
 *    y = A x + t from four mapped points; the core returns d loss / d[A|t];
 *    d loss / d p = sum_rc dL/dA_rc dA_rc/dp + sum_r dL/dt_r dt_r/dp with the
 *    parameter Jacobians dA/dp, dt/dp read off the transform's own GetJacobian at
 *    the four points 0, e_x, e_y, e_z (exact: the Jacobian is affine in x);
 *  - any other transform (B-spline, B-spline after an affine): the dense field
 *    u(x) = T(x) - x on the fixed grid (the core's y = A (x + u) + t with A = I,
 *    t = 0), the core returns d loss / d u(x) = d loss / d y(x), and
 *    d loss / d p = sum_x (dL/dy(x))^T dT/dp(x) through the transform's sparse
 *    EvaluateJacobianWithImageGradientProduct (elastix's own machinery).
 *
 * Extra keys: (GigaRegDevice "auto"|"cpu"|"cuda"|"cuda:N"), (GigaRegNumberOfDevices N):
 * N z-slab shards reduced in a fixed order (ShardedMetric); on CUDA, shard s on GPU
 * (index + s mod G), one backend and host thread per GPU. Under mpirun with R ranks
 * (gigaregElxMPI.h): R x N shards, rank r evaluating shards [r N, (r + 1) N) on its own
 * GPUs (index + local rank x N + ...), reduced exactly over the ranks.
 */
#ifndef GIGAREG_ELX_METRIC_H
#define GIGAREG_ELX_METRIC_H

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "itkImage.h"
#include "itkImageRegionConstIteratorWithIndex.h"
#include "itkAdvancedBSplineDeformableTransform.h"
#include "itkAdvancedCombinationTransform.h"
#include "gigaregElxMPI.h"
#include <cstdlib>
#include <chrono>
#include <thread>
#include <functional>
#ifdef _OPENMP
#include <omp.h>
#endif

extern "C" {
#include "gigareg/backend.h"
#include "gigareg/image.h"
#include "gigareg/transform.h"
#include "gigareg/status.h"
}

namespace elastix
{

/** Backend buffers and grids of one resolution level. Not a template: the images are float 3D. */
class GigaRegMetricData
{
public:
  gr_backend * be = nullptr;
  std::string  device = "auto";
  int          gpu = 0;       /* be's GPU index (GigaRegDevice's, moved by the local rank under mpirun) */
  int          ndev = 1;
  /* cache keys of the uploaded level */
  const void * fixedKey = nullptr, *movingKey = nullptr, *fmaskKey = nullptr, *mmaskKey = nullptr;
  unsigned long fixedTime = 0, movingTime = 0;
  int normalised = -1;
  gr_grid fg, mg;
  int64_t fnvox = 0, mnvox = 0;
  int64_t fmaskCount = 0;
  float *dF = nullptr, *dM = nullptr, *dFm = nullptr, *dMm = nullptr, *dU = nullptr, *dG = nullptr;
  double *dCoef = nullptr, *dDcoef = nullptr;          /* B-spline coefficients and their gradient (core ops) */
  int64_t nCoef = 0;
  std::vector< double > hostDcoef;
  std::vector< float > hostU, hostG;
  double fmin = 0, fmax = 1, mmin = 0, mmax = 1;     /* true ranges of the level images */
  double tField = 0, tMetric = 0, tChain = 0;        /* seconds this level: dense field, core metric, chain rule */
  long   nEval = 0;
  double flo = 0, fhi = 1, mlo = 0, mhi = 1;         /* elastix's limiter ranges (MI bins) */
  bool   haveRange = false;

  long         generation = 0;                        /* incremented when a level is uploaded */

  /** Further GPUs of GigaRegNumberOfDevices N > 1 with a CUDA backend: slot j + 1 is GPU
   * (index of be) + j + 1; each holds copies of the level's images (uploaded per generation). */
  struct Device
  {
    gr_backend * be = nullptr;
    long         generation = -1;
    float *      dF = nullptr, *dFm = nullptr, *dM = nullptr, *dMm = nullptr;
    double *     dCoef = nullptr; /* a B-spline's coefficients (FastBSpline's shard fields) */
    int64_t      nCoef = 0;
    long         coefEval = -1;   /* the evaluation they were uploaded for */
    template< class T > void Free( T *& p ) { if( p ) { be->ops->free( be, p ); } p = nullptr; }
    void Release() { Free( dF ); Free( dFm ); Free( dM ); Free( dMm ); Free( dCoef ); nCoef = 0; coefEval = -1; generation = -1; }
  };
  std::vector< Device > extra;
  bool                  probed = false;

  ~GigaRegMetricData() { this->DestroyAll(); }

  template< class T > void FreeBuf( T *& p ) { if( p && be ) { be->ops->free( be, p ); } p = nullptr; }
  void Release()
  {
    FreeBuf( dF ); FreeBuf( dM ); FreeBuf( dFm ); FreeBuf( dMm ); FreeBuf( dU ); FreeBuf( dG );
    FreeBuf( dCoef ); FreeBuf( dDcoef ); nCoef = 0;
    fixedKey = movingKey = fmaskKey = mmaskKey = nullptr;
    for( Device & e : extra ) { e.Release(); }
  }
  void DestroyAll()
  {
    this->Release();
    for( Device & e : extra ) { gr_backend_destroy( e.be ); }
    extra.clear();
    probed = false;
    if( be ) { gr_backend_destroy( be ); }
    be = nullptr;
  }
};

inline void gigaregCheck( gr_status s, const char * what )
{
  if( s != GR_OK )
  {
    std::ostringstream os;
    os << "GigaReg " << what << ": " << gr_strerror( s ) << " " << gr_last_error();
    throw itk::ExceptionObject( __FILE__, __LINE__, os.str(), "GigaRegMetric" );
  }
}

/** The core's geometry of an image's buffered region (its first voxel is the origin). */
template< class TImage >
gr_geometry gigaregGeometry( const TImage * img )
{
  const auto r = img->GetBufferedRegion();
  gr_geometry geo;
  typename TImage::PointType o;
  img->TransformIndexToPhysicalPoint( r.GetIndex(), o );
  for( unsigned a = 0; a < 3; ++a )
  {
    geo.size[ a ]    = static_cast< int64_t >( r.GetSize()[ a ] );
    geo.spacing[ a ] = img->GetSpacing()[ a ];
    geo.origin[ a ]  = o[ a ];
    for( unsigned b = 0; b < 3; ++b ) { geo.direction[ a * 3 + b ] = img->GetDirection()( a, b ); }
  }
  return geo;
}

template< class TImage >
void gigaregGrid( const TImage * img, gr_grid & g, int64_t & nvox )
{
  const gr_geometry geo = gigaregGeometry( img );
  gigaregCheck( gr_grid_from_geometry( &geo, &g ), "grid" );
  nvox = geo.size[ 0 ] * geo.size[ 1 ] * geo.size[ 2 ];
}

/** Voxel index -> physical point of a gr_grid. */
inline void gigaregI2P( const gr_grid & g, double i, double j, double k, double p[ 3 ] )
{
  for( int a = 0; a < 3; ++a )
  {
    p[ a ] = g.i2p[ a * 4 + 0 ] * i + g.i2p[ a * 4 + 1 ] * j + g.i2p[ a * 4 + 2 ] * k + g.i2p[ a * 4 + 3 ];
  }
}

/** A cubic B-spline transform (itk::AdvancedBSplineDeformableTransform), alone or composed
 * after a linear initial transform (elastix's AdvancedCombinationTransform: the
 * ElastixModelZoo affine-then-B-spline chain), in the core's voxel-index form on grid g
 * (backend.h gr_bspline: c = M (L p + l - origin) - gridIndex, u_initial = L p + l - p with
 * p = g.i2p [i j k 1], elastix's valid region and support rule). bs.coef is left null: the
 * caller puts the P = 3 G coefficients (elastix's parameter order) in backend memory. false
 * for any other transform (GIGAREG_ELX_GENERIC=1: always, to test the generic path).
 * coefHost (optional): the transform's own coefficients (its current parameters). */
template< class TScalar >
bool gigaregBSplineOf( const itk::Transform< TScalar, 3, 3 > * T, const gr_grid & g, gr_bspline & bs, int64_t & G,
                       const double ** coefHost = nullptr )
{
  typedef itk::AdvancedBSplineDeformableTransform< TScalar, 3, 3 > BSplineType;
  typedef itk::AdvancedCombinationTransform< TScalar, 3 >          CombinationType;
  static const bool generic = std::getenv( "GIGAREG_ELX_GENERIC" ) && std::atoi( std::getenv( "GIGAREG_ELX_GENERIC" ) );
  if( generic ) { return false; }
  const CombinationType * C = dynamic_cast< const CombinationType * >( T );
  const BSplineType *     B = dynamic_cast< const BSplineType * >( C ? C->GetCurrentTransform() : T );
  if( !B ) { return false; }
  const auto * I = C ? C->GetInitialTransform() : nullptr;
  if( I && ( !I->IsLinear() || !C->GetUseComposition() ) ) { return false; }
  double L[ 12 ] = { 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0 }; /* z = L p + l */
  if( I )
  {
    typename BSplineType::InputPointType  pts[ 4 ];
    typename BSplineType::OutputPointType y[ 4 ];
    for( int c = 0; c < 4; ++c )
    {
      pts[ c ].Fill( 0.0 );
      if( c > 0 ) { pts[ c ][ c - 1 ] = 1.0; }
      y[ c ] = I->TransformPoint( pts[ c ] );
    }
    for( int r = 0; r < 3; ++r )
    {
      for( int c = 0; c < 3; ++c ) { L[ r * 4 + c ] = y[ c + 1 ][ r ] - y[ 0 ][ r ]; }
      L[ r * 4 + 3 ] = y[ 0 ][ r ];
    }
  }
  const auto region = B->GetGridRegion();
  const auto go     = B->GetGridOrigin();
  const auto gs     = B->GetGridSpacing();
  const auto gd     = B->GetGridDirection();
  itk::Matrix< double, 3, 3 > i2pg;
  for( int r = 0; r < 3; ++r ) { for( int c = 0; c < 3; ++c ) { i2pg( r, c ) = gd( r, c ) * gs[ c ]; } }
  const itk::Matrix< double, 3, 3 > M( i2pg.GetInverse() );
  std::memset( &bs, 0, sizeof( bs ) );
  double LP[ 12 ]; /* L o i2p */
  for( int r = 0; r < 3; ++r )
  {
    for( int k = 0; k < 4; ++k )
    {
      double v = k == 3 ? L[ r * 4 + 3 ] : 0.0;
      for( int m = 0; m < 3; ++m ) { v += L[ r * 4 + m ] * g.i2p[ m * 4 + k ]; }
      LP[ r * 4 + k ] = v;
    }
  }
  for( int r = 0; r < 3; ++r )
  {
    for( int k = 0; k < 4; ++k )
    {
      double v = 0.0;
      for( int m = 0; m < 3; ++m ) { v += M( r, m ) * ( LP[ m * 4 + k ] - ( k == 3 ? go[ m ] : 0.0 ) ); }
      bs.cA[ r * 4 + k ] = v - ( k == 3 ? static_cast< double >( region.GetIndex()[ r ] ) : 0.0 );
      bs.zA[ r * 4 + k ] = LP[ r * 4 + k ] - g.i2p[ r * 4 + k ];
    }
    bs.size[ r ] = static_cast< int64_t >( region.GetSize()[ r ] );
  }
  G = bs.size[ 0 ] * bs.size[ 1 ] * bs.size[ 2 ];
  if( static_cast< int64_t >( B->GetNumberOfParameters() ) != 3 * G ) { return false; }
  gigaregCheck( gr_bspline_prepare( &bs ), "B-spline grid" );
  if( coefHost ) { *coefHost = B->GetParameters().data_block(); }
  return true;
}

/** The chain rule's sum over the fixed voxels whose field gradient g (G: 3 planes of nx*ny*nz
 * floats) is non-zero: each thread gets its own voxel function from makeVoxelFn() (so it may
 * hold scratch), which adds the voxel's contribution into the thread's P accumulators as
 * fn(i, j, k, g, acc); the accumulators are then added in thread order (reproducible for a
 * fixed thread count). */
template< class MakeVoxelFn >
inline std::vector< double > gigaregGradientSum( int64_t nx, int64_t ny, int64_t nz, const float * G, size_t P,
                                                 MakeVoxelFn makeVoxelFn )
{
  const int64_t n = nx * ny * nz;
  int           nt = 1;
#ifdef _OPENMP
  nt = omp_get_max_threads();
#endif
  std::vector< std::vector< double > > acc( static_cast< size_t >( nt ) );
#pragma omp parallel num_threads(nt)
  {
    int tid = 0;
#ifdef _OPENMP
    tid = omp_get_thread_num();
#endif
    std::vector< double > & a = acc[ static_cast< size_t >( tid ) ];
    a.assign( P, 0.0 );
    auto fn = makeVoxelFn();
#pragma omp for schedule(static)
    for( int64_t k = 0; k < nz; ++k )
    {
      for( int64_t j = 0; j < ny; ++j )
      {
        for( int64_t i = 0; i < nx; ++i )
        {
          const int64_t v = ( k * ny + j ) * nx + i;
          const float   g[ 3 ] = { G[ v ], G[ n + v ], G[ 2 * n + v ] };
          if( g[ 0 ] == 0.0f && g[ 1 ] == 0.0f && g[ 2 ] == 0.0f ) { continue; }
          fn( i, j, k, g, a.data() );
        }
      }
    }
  }
  std::vector< double > sum( P, 0.0 );
  for( size_t q = 0; q < P; ++q )
  {
    double d = 0;
    for( int t = 0; t < nt; ++t ) { d += acc[ static_cast< size_t >( t ) ][ q ]; }
    sum[ q ] = d;
  }
  return sum;
}

/** The GigaReg evaluation on top of an elastix metric component TBase. */
template< class TElastix, class TBase >
class GigaRegMetric : public TBase
{
public:
  typedef TBase                                     Superclass;
  typedef typename TBase::ParametersType            ParametersType;
  typedef typename TBase::MeasureType               MeasureType;
  typedef typename TBase::DerivativeType            DerivativeType;
  typedef typename TBase::FixedImageType            FixedImageType;
  typedef typename TBase::MovingImageType           MovingImageType;
  typedef typename TBase::AdvancedTransformType     AdvancedTransformType;
  typedef typename AdvancedTransformType::InputPointType InputPointType;
  typedef typename AdvancedTransformType::JacobianType   JacobianType;
  typedef typename AdvancedTransformType::NonZeroJacobianIndicesType NonZeroJacobianIndicesType;
  typedef typename AdvancedTransformType::MovingImageGradientType    MovingImageGradientType;

  MeasureType GetValue( const ParametersType & parameters ) const override
  {
    MeasureType    value = 0;
    DerivativeType dummy;
    this->GigaRegEvaluate( parameters, value, nullptr );
    return value;
  }

  void GetDerivative( const ParametersType & parameters, DerivativeType & derivative ) const override
  {
    MeasureType value = 0;
    this->GigaRegEvaluate( parameters, value, &derivative );
  }

  void GetValueAndDerivative( const ParametersType & parameters, MeasureType & value,
    DerivativeType & derivative ) const override
  {
    this->GigaRegEvaluate( parameters, value, &derivative );
  }

  void BeforeRegistration( void ) override
  {
    this->Superclass::BeforeRegistration();
    if( gigaregMPI().size > 1 ) { gigaregRankOutputs( this->GetConfiguration() ); }
  }

  void BeforeEachResolution( void ) override
  {
    this->Superclass::BeforeEachResolution();
    const unsigned int level = ( this->m_Registration->GetAsITKBaseType() )->GetCurrentLevel();
    std::string device = "auto";
    this->GetConfiguration()->ReadParameter( device, "GigaRegDevice", this->GetComponentLabel(), level, 0 );
    int ndev = 1;
    this->GetConfiguration()->ReadParameter( ndev, "GigaRegNumberOfDevices", this->GetComponentLabel(), level, 0 );
    if( ndev < 1 ) { ndev = 1; }
    const GigaRegMPI & mpi = gigaregMPI();
    if( !mpi.error.empty() ) { gigaregCheck( GR_ERR_COMM, mpi.error.c_str() ); }
    GigaRegMetricData & D = this->m_GR;
    if( D.be && device != D.device ) { D.DestroyAll(); }
    D.device = device;
    D.ndev   = ndev;
    if( !D.be )
    {
      gr_device_kind kind;
      int            index = 0;
      gigaregCheck( gr_device_parse( device.c_str(), &kind, &index ), "GigaRegDevice" );
      /* under mpirun the ranks of one host take consecutive groups of ndev GPUs (wrapping
       * around: more ranks than GPUs share them) */
      const int gpus = gr_cuda_devices();
      if( mpi.size > 1 && kind != GR_DEVICE_CPU && gpus > 0 ) { index = ( index + mpi.localRank * ndev ) % gpus; }
      gigaregCheck( gr_backend_create( kind, index, 0, &D.be ), "backend" );
      D.gpu = index;
      elxout << "  GigaReg metric " << this->elxGetClassName() << ": backend " << D.be->ops->name
             << " (GigaRegDevice \"" << device << "\"), full sampling";
      if( ndev > 1 || mpi.size > 1 ) { elxout << ", " << ndev * mpi.size << " shards"; }
      if( mpi.size > 1 ) { elxout << " over " << mpi.size << " MPI ranks (this is rank " << mpi.rank << ")"; }
      elxout << std::endl;
    }
    this->m_GRLevelAnnounced = false;
    D.tField = D.tMetric = D.tChain = 0;
    D.nEval = 0;
  }

  void AfterEachResolution( void ) override
  {
    this->Superclass::AfterEachResolution();
    const GigaRegMetricData & D = this->m_GR;
    elxout << "  GigaReg metric time this resolution: " << D.nEval << " evaluations; core metric " << D.tMetric
           << " s, dense field " << D.tField << " s, chain rule to the parameters " << D.tChain << " s; backend peak "
           << static_cast< double >( D.be ? D.be->bytes_peak : 0 ) / 1048576.0 << " MiB" << std::endl;
  }

protected:
  GigaRegMetric() {}
  ~GigaRegMetric() override {}

  /** The metric kind and its parameters; scale multiplies value and derivative
   * (elastix's normalisation factors). normalise: intensities mapped to [0, 1]
   * before upload (LNCC, whose epsilon is absolute). */
  virtual void GigaRegSpec( gr_metric_spec & spec, double & scale, int & normalise ) const = 0;

  mutable GigaRegMetricData m_GR;
  /** Set by FastBSpline around a sharded evaluation: writes shard windows' fields (planes
   * [z0, z0 + nz) of the fixed grid) on the given GPU slot's backend, so that no GPU holds the
   * whole field and no field goes through the host. */
  mutable std::function< gr_status( gr_backend * be, int slot, int64_t z0, int64_t nz, float * dwin ) > m_ShardField;
  mutable bool              m_GRLevelAnnounced = false;

  void Upload( float *& dst, const float * src, int64_t n ) const
  {
    GigaRegMetricData & D = this->m_GR;
    if( !dst )
    {
      dst = static_cast< float * >( D.be->ops->alloc( D.be, static_cast< size_t >( n ) * sizeof( float ) ) );
      if( !dst ) { gigaregCheck( GR_ERR_NOMEM, "allocation" ); }
    }
    gigaregCheck( D.be->ops->upload( D.be, dst, src, static_cast< size_t >( n ) * sizeof( float ) ), "upload" );
  }

  /** Rasterise an elastix (spatial object) mask on a grid: 1 inside, 0 outside. */
  template< class TMask >
  std::vector< float > Rasterise( const TMask * mask, const gr_grid & g, int64_t & count ) const
  {
    const int64_t nx = g.n[ 0 ], ny = g.n[ 1 ], nz = g.n[ 2 ];
    std::vector< float > out( static_cast< size_t >( nx * ny * nz ) );
    int64_t c = 0;
#pragma omp parallel for reduction(+:c) schedule(static)
    for( int64_t k = 0; k < nz; ++k )
    {
      for( int64_t j = 0; j < ny; ++j )
      {
        for( int64_t i = 0; i < nx; ++i )
        {
          double p[ 3 ];
          gigaregI2P( g, (double)i, (double)j, (double)k, p );
          typename TMask::PointType pt;
          pt[ 0 ] = p[ 0 ]; pt[ 1 ] = p[ 1 ]; pt[ 2 ] = p[ 2 ];
          const bool in = mask->IsInsideInWorldSpace( pt );
          out[ static_cast< size_t >( ( k * ny + j ) * nx + i ) ] = in ? 1.0f : 0.0f;
          c += in ? 1 : 0;
        }
      }
    }
    count = c;
    return out;
  }

  /** Upload the current level's images and masks when they changed. */
  void PrepareLevel( int normalise ) const
  {
    GigaRegMetricData & D = this->m_GR;
    if( !D.be ) { gigaregCheck( GR_ERR_INVALID_ARG, "backend not created (BeforeEachResolution not called)" ); }
    const FixedImageType *  F  = this->GetFixedImage();
    const MovingImageType * M  = this->GetMovingImage();
    const void *            fm = this->GetFixedImageMask();
    const void *            mm = this->GetMovingImageMask();
    if( D.fixedKey == F && D.movingKey == M && D.fixedTime == F->GetMTime() && D.movingTime == M->GetMTime()
      && D.fmaskKey == fm && D.mmaskKey == mm && D.normalised == normalise && D.dF )
    {
      return;
    }
    D.Release();
    gigaregGrid( F, D.fg, D.fnvox );
    gigaregGrid( M, D.mg, D.mnvox );
    const float * fp = F->GetBufferPointer();
    const float * mp = M->GetBufferPointer();
    /* Ranges (MI bins, LNCC normalisation): elastix's own true min/max of the level images. */
    D.fmin = this->m_FixedImageTrueMin;  D.fmax = this->m_FixedImageTrueMax;
    D.mmin = this->m_MovingImageTrueMin; D.mmax = this->m_MovingImageTrueMax;
    if( !( D.fmax > D.fmin ) || !( D.mmax > D.mmin ) )
    {
      D.fmin = *std::min_element( fp, fp + D.fnvox ); D.fmax = *std::max_element( fp, fp + D.fnvox );
      D.mmin = *std::min_element( mp, mp + D.mnvox ); D.mmax = *std::max_element( mp, mp + D.mnvox );
    }
    /* MI histogram ranges: elastix's limits (the true range widened by Fixed/MovingLimitRangeRatio). */
    D.flo = this->m_FixedImageMinLimit;  D.fhi = this->m_FixedImageMaxLimit;
    D.mlo = this->m_MovingImageMinLimit; D.mhi = this->m_MovingImageMaxLimit;
    if( !( D.fhi > D.flo ) ) { D.flo = D.fmin; D.fhi = D.fmax; }
    if( !( D.mhi > D.mlo ) ) { D.mlo = D.mmin; D.mhi = D.mmax; }
    if( normalise )
    {
      std::vector< float > tmp( static_cast< size_t >( std::max( D.fnvox, D.mnvox ) ) );
      const double fs = D.fmax > D.fmin ? 1.0 / ( D.fmax - D.fmin ) : 1.0;
      for( int64_t v = 0; v < D.fnvox; ++v ) { tmp[ v ] = static_cast< float >( ( fp[ v ] - D.fmin ) * fs ); }
      this->Upload( D.dF, tmp.data(), D.fnvox );
      const double ms = D.mmax > D.mmin ? 1.0 / ( D.mmax - D.mmin ) : 1.0;
      for( int64_t v = 0; v < D.mnvox; ++v ) { tmp[ v ] = static_cast< float >( ( mp[ v ] - D.mmin ) * ms ); }
      this->Upload( D.dM, tmp.data(), D.mnvox );
    }
    else
    {
      this->Upload( D.dF, fp, D.fnvox );
      this->Upload( D.dM, mp, D.mnvox );
    }
    D.fmaskCount = D.fnvox;
    if( this->GetFixedImageMask() )
    {
      std::vector< float > r = this->Rasterise( this->GetFixedImageMask(), D.fg, D.fmaskCount );
      this->Upload( D.dFm, r.data(), D.fnvox );
    }
    if( this->GetMovingImageMask() )
    {
      int64_t              c;
      std::vector< float > r = this->Rasterise( this->GetMovingImageMask(), D.mg, c );
      this->Upload( D.dMm, r.data(), D.mnvox );
    }
    D.fixedKey = F; D.movingKey = M; D.fixedTime = F->GetMTime(); D.movingTime = M->GetMTime();
    D.fmaskKey = fm; D.mmaskKey = mm; D.normalised = normalise;
    ++D.generation;
    if( !this->m_GRLevelAnnounced )
    {
      elxout << "  GigaReg metric: fixed level " << D.fg.n[ 0 ] << "x" << D.fg.n[ 1 ] << "x" << D.fg.n[ 2 ]
             << " (" << D.fmaskCount << " voxels in the mask), moving " << D.mg.n[ 0 ] << "x" << D.mg.n[ 1 ] << "x"
             << D.mg.n[ 2 ] << std::endl;
      this->m_GRLevelAnnounced = true;
    }
  }

  /** One metric evaluation of the core over the fixed grid; with
   * GigaRegNumberOfDevices N > 1, over N z-slab shards (ShardedMetric). */
  void CoreMetric( const gr_metric_spec & spec, const gr_affine * T, const float * disp,
                   gr_metric_result & res, float * gradU ) const
  {
    GigaRegMetricData & D = this->m_GR;
    /* NCC has no window kernel: under mpirun every rank evaluates it whole (GigaRegNumberOfDevices
     * > 1 with NCC is refused in ShardedMetric) */
    if( D.ndev > 1 || ( gigaregMPI().size > 1 && spec.kind != GR_METRIC_NCC ) )
    {
      this->ShardedMetric( spec, T, disp, res, gradU );
      return;
    }
    gigaregCheck( D.be->ops->metric( D.be, &spec, &D.fg, D.dF, D.dFm, &D.mg, D.dM, D.dMm, T, disp, &res, gradU ),
      "metric" );
  }

  /** The fixed grid split into N z-slabs ("devices"), each evaluated by the core's
   * window kernel (backend.h gr_metric_region) on its own planes plus the halo the
   * metric needs (LNCC: 2r planes), in two phases: COUNT (valid voxels; MI: the
   * slab's joint histogram), reduced over the shards in shard order (integers:
   * exact), then EVAL with the global count / histogram. Loss and affine-gradient
   * partials come per plane and are summed in global plane order, d loss / d u is
   * copied back from each shard's owned planes: the result equals the single-shard
   * evaluation (bitwise for MSE, MI and LNCC, as the Grid Parallel driver
   * guarantees) wherever the shards run, so the optimizer and outputs are unchanged.
   *
   * Placement: on a CUDA backend, shard s runs on GPU slot s mod G, G = the GPUs
   * visible from the selected one on (GPU index + j, j < min(N, G)), one backend per GPU
   * and one host thread per GPU (the shards of one GPU in order); each further GPU
   * holds copies of the level's fixed / moving images and masks, its shards' field
   * windows (uploaded from the host copy of the field) and gradient windows (sent
   * back to the first GPU's gradient through the host after the join, in shard
   * order). On the CPU backend (or one GPU) the shards run one after the other on
   * this process's backend. NCC has no window kernel in the core: not supported. */
  void ShardedMetric( const gr_metric_spec & spec, const gr_affine * T, const float * disp,
                      gr_metric_result & res, float * gradU ) const
  {
    GigaRegMetricData & D = this->m_GR;
    if( spec.kind == GR_METRIC_NCC )
    {
      gigaregCheck( GR_ERR_UNSUPPORTED, "GigaRegNumberOfDevices > 1 with NCC (the core has no windowed NCC; "
                                        "use GigaRegLocalNormalizedCorrelation, MI or mean squares)" );
    }
    if( !D.be->ops->metric_region ) { gigaregCheck( GR_ERR_UNSUPPORTED, "backend without metric_region" ); }
    const int64_t nz = D.fg.n[ 2 ], plane = D.fg.n[ 0 ] * D.fg.n[ 1 ], n = D.fnvox;
    const GigaRegMPI & mpi = gigaregMPI();
    const int     R  = mpi.size, rank = mpi.rank;
    const int     N  = static_cast< int >( std::min< int64_t >( static_cast< int64_t >( R ) * D.ndev, nz ) );
    if( N < R )
    {
      gigaregCheck( GR_ERR_UNSUPPORTED, ( "the fixed image of this resolution has " + std::to_string( nz ) + " z planes, fewer than the "
                                          + std::to_string( R ) + " MPI ranks: use fewer ranks or less shrinking" ).c_str() );
    }
    /* this rank's shards [sa, sb): the first ranks own the first planes (rank order = plane order) */
    const int sa = static_cast< int >( static_cast< int64_t >( N ) * rank / R );
    const int sb = static_cast< int >( static_cast< int64_t >( N ) * ( rank + 1 ) / R );
    const int64_t B  = spec.kind == GR_METRIC_MI ? ( spec.mi_bins > 0 ? spec.mi_bins : 32 ) : 0;
    const int64_t halo = spec.kind == GR_METRIC_LNCC ? 2 * ( spec.lncc_radius > 0 ? spec.lncc_radius : 2 ) : 0;
    std::vector< int64_t > hist( static_cast< size_t >( B * B ), 0 );
    std::vector< double >  partials( static_cast< size_t >( nz * GR_METRIC_PARTIALS ), 0.0 );
    struct Win { int64_t z0, nz, own0, own1; };
    std::vector< Win > win( static_cast< size_t >( N ) );
    int64_t wmax = 0;
    for( int s = 0; s < N; ++s )
    {
      Win & w = win[ static_cast< size_t >( s ) ];
      w.own0 = nz * s / N; w.own1 = nz * ( s + 1 ) / N;
      w.z0   = std::max< int64_t >( 0, w.own0 - halo );
      w.nz   = std::min< int64_t >( nz, w.own1 + halo ) - w.z0;
      wmax   = std::max( wmax, w.nz * plane );
    }
    const int G = this->ShardDevices( sb - sa );
    const bool haveField = disp || this->m_ShardField; /* a dense field (else T alone) */
    /* per GPU slot: its backend, images and one field / gradient window buffer pair */
    struct Slot { gr_backend * be; const float *F, *Fm, *M, *Mm; float *dwin = nullptr, *gwin = nullptr; };
    std::vector< Slot > slot( static_cast< size_t >( G ) );
    for( int g = 0; g < G; ++g )
    {
      Slot & q = slot[ static_cast< size_t >( g ) ];
      if( g == 0 ) { q.be = D.be; q.F = D.dF; q.Fm = D.dFm; q.M = D.dM; q.Mm = D.dMm; }
      else
      {
        const GigaRegMetricData::Device & e = D.extra[ static_cast< size_t >( g - 1 ) ];
        q.be = e.be; q.F = e.dF; q.Fm = e.dFm; q.M = e.dM; q.Mm = e.dMm;
      }
    }
    struct Guard { std::vector< Slot > * s;
      ~Guard() { for( Slot & q : *s ) { if( q.dwin ) { q.be->ops->free( q.be, q.dwin ); }
                                        if( q.gwin ) { q.be->ops->free( q.be, q.gwin ); } } } } guard{ &slot };
    for( Slot & q : slot )
    {
      if( haveField ) { q.dwin = static_cast< float * >( q.be->ops->alloc( q.be, static_cast< size_t >( 3 * wmax ) * sizeof( float ) ) ); }
      if( gradU ) { q.gwin = static_cast< float * >( q.be->ops->alloc( q.be, static_cast< size_t >( 3 * wmax ) * sizeof( float ) ) ); }
      if( ( haveField && !q.dwin ) || ( gradU && !q.gwin ) ) { gigaregCheck( GR_ERR_NOMEM, "shard buffers" ); }
    }
    /* the host copy of the field (both dense paths upload D.hostU into disp) for further GPUs */
    const float * hostDisp = nullptr;
    if( disp && !this->m_ShardField && G > 1 )
    {
      if( D.hostU.size() != static_cast< size_t >( 3 * n ) ) { gigaregCheck( GR_ERR_INVALID_ARG, "host field" ); }
      hostDisp = D.hostU.data();
    }
    /* per shard outputs */
    std::vector< std::vector< int64_t > > hs( static_cast< size_t >( N ), std::vector< int64_t >( hist.size(), 0 ) );
    std::vector< gr_metric_result >       rs( static_cast< size_t >( N ) );
    std::vector< gr_metric_region >       regs( static_cast< size_t >( N ) );
    std::vector< std::vector< float > >   hostGrad( static_cast< size_t >( N ) );
    std::vector< gr_status >              st( static_cast< size_t >( N ), GR_OK );
    std::vector< std::string >            msg( static_cast< size_t >( N ) );
    int64_t nGlobal = 0;
    auto runShard = [&]( int s, int phase ) -> void {
      const Win &  w = win[ static_cast< size_t >( s ) ];
      const int    g = ( s - sa ) % G;
      const Slot & q = slot[ static_cast< size_t >( g ) ];
      const int64_t wn = w.nz * plane, on = ( w.own1 - w.own0 ) * plane;
      gr_status      e = GR_OK;
      const char *   what = "copy";
      if( this->m_ShardField )
      {
        what = "shard field";
        e    = this->m_ShardField( q.be, g, w.z0, w.nz, q.dwin );
      }
      else if( disp )
      {
        for( int c = 0; c < 3 && e == GR_OK; ++c )
        {
          e = g == 0 ? q.be->ops->copy( q.be, q.dwin + c * wn, disp + c * n + w.z0 * plane, static_cast< size_t >( wn ) * sizeof( float ) )
                     : q.be->ops->upload( q.be, q.dwin + c * wn, hostDisp + c * n + w.z0 * plane, static_cast< size_t >( wn ) * sizeof( float ) );
        }
      }
      gr_metric_region & reg = regs[ static_cast< size_t >( s ) ];
      std::memset( &reg, 0, sizeof( reg ) );
      reg.z0 = w.z0; reg.nz = w.nz; reg.own0 = w.own0; reg.own1 = w.own1;
      reg.phase    = phase == 0 ? GR_METRIC_PHASE_COUNT : GR_METRIC_PHASE_EVAL;
      reg.n_global = nGlobal;
      reg.hist     = B ? ( phase == 0 ? hs[ static_cast< size_t >( s ) ].data() : hist.data() ) : nullptr;
      reg.partials = partials.data() + w.own0 * GR_METRIC_PARTIALS;
      gr_metric_result & r = rs[ static_cast< size_t >( s ) ];
      std::memset( &r, 0, sizeof( r ) );
      if( e == GR_OK )
      {
        what = phase == 0 ? "metric_region (count)" : "metric_region (eval)";
        e = q.be->ops->metric_region( q.be, &spec, &reg, &D.fg, q.F + w.z0 * plane, q.Fm ? q.Fm + w.z0 * plane : nullptr,
                                      &D.mg, q.M, q.Mm, T, haveField ? q.dwin : nullptr, &r, gradU ? q.gwin : nullptr );
      }
      if( e == GR_OK && phase == 1 && gradU )
      {
        what = "copy";
        if( g == 0 )
        {
          for( int c = 0; c < 3 && e == GR_OK; ++c )
          {
            e = q.be->ops->copy( q.be, gradU + c * n + w.own0 * plane, q.gwin + c * wn + ( w.own0 - w.z0 ) * plane,
                                 static_cast< size_t >( on ) * sizeof( float ) );
          }
        }
        else
        {
          std::vector< float > & h = hostGrad[ static_cast< size_t >( s ) ];
          h.resize( static_cast< size_t >( 3 * on ) );
          for( int c = 0; c < 3 && e == GR_OK; ++c )
          {
            e = q.be->ops->download( q.be, h.data() + c * on, q.gwin + c * wn + ( w.own0 - w.z0 ) * plane,
                                     static_cast< size_t >( on ) * sizeof( float ) );
          }
        }
      }
      st[ static_cast< size_t >( s ) ] = e;
      if( e != GR_OK ) { msg[ static_cast< size_t >( s ) ] = std::string( what ) + ": " + gr_strerror( e ) + " " + gr_last_error(); }
    };
    for( int phase = 0; phase < 2; ++phase )
    {
      if( G == 1 )
      {
        for( int s = sa; s < sb; ++s )
        {
          runShard( s, phase );
          if( st[ static_cast< size_t >( s ) ] != GR_OK ) { break; }
        }
      }
      else
      {
        std::vector< std::thread > th;
        for( int g = 0; g < G; ++g )
        {
          th.emplace_back( [&, g]() {
            for( int s = sa + g; s < sb; s += G )
            {
              runShard( s, phase );
              if( st[ static_cast< size_t >( s ) ] != GR_OK ) { break; }
            }
          } );
        }
        for( std::thread & t : th ) { t.join(); }
      }
      this->ShardStatus( st, msg, sa, sb );
      if( phase == 0 )
      {
        for( int s = sa; s < sb; ++s ) /* shard order (integers: exact in any order, over ranks too) */
        {
          nGlobal += rs[ static_cast< size_t >( s ) ].n_valid;
          for( size_t b = 0; b < hist.size(); ++b ) { hist[ b ] += hs[ static_cast< size_t >( s ) ][ b ]; }
        }
        if( R > 1 )
        {
          hist.push_back( nGlobal );
          gigaregCheck( mpi.comm->ops->allreduce_sum_i64( mpi.comm, hist.data(), static_cast< int >( hist.size() ) ),
                        "MPI reduction of the counts" );
          nGlobal = hist.back();
          hist.pop_back();
        }
        if( nGlobal == 0 ) { std::memset( &res, 0, sizeof( res ) ); return; }
        continue;
      }
      for( int s = sa; s < sb; ++s ) /* further GPUs' gradient planes, through the host, in shard order */
      {
        if( !gradU || ( s - sa ) % G == 0 ) { continue; }
        const Win &   w  = win[ static_cast< size_t >( s ) ];
        const int64_t on = ( w.own1 - w.own0 ) * plane;
        for( int c = 0; c < 3; ++c )
        {
          gigaregCheck( D.be->ops->upload( D.be, gradU + c * n + w.own0 * plane, hostGrad[ static_cast< size_t >( s ) ].data() + c * on,
                                           static_cast< size_t >( on ) * sizeof( float ) ), "upload" );
        }
      }
      /* the last shard's scales (and MI value, made from the global histogram) */
      double last[ 3 ] = { rs[ static_cast< size_t >( N - 1 ) ].value, regs[ static_cast< size_t >( N - 1 ) ].value_scale,
                           regs[ static_cast< size_t >( N - 1 ) ].affine_scale };
      if( R > 1 ) { this->GatherRanks( win, sa, sb, partials, gradU, last ); }
      double tot[ GR_METRIC_PARTIALS ] = { 0 };
      for( int64_t z = 0; z < nz; ++z ) /* plane order */
      {
        for( int q = 0; q < GR_METRIC_PARTIALS; ++q ) { tot[ q ] += partials[ z * GR_METRIC_PARTIALS + q ]; }
      }
      std::memset( &res, 0, sizeof( res ) );
      res.n_valid = nGlobal;
      res.value   = spec.kind == GR_METRIC_MI ? last[ 0 ] : last[ 1 ] * tot[ 0 ];
      for( int q = 0; q < 12; ++q ) { res.grad_affine[ q ] = last[ 2 ] * tot[ 1 + q ]; }
    }
  }

  /** After a phase of ShardedMetric: throw this rank's first shard error; under MPI the ranks
   * first agree whether any failed, so all of them stop (none waits in the next collective). */
  void ShardStatus( const std::vector< gr_status > & st, const std::vector< std::string > & msg, int sa, int sb ) const
  {
    std::string mine;
    for( int s = sa; s < sb && mine.empty(); ++s )
    {
      if( st[ static_cast< size_t >( s ) ] != GR_OK ) { mine = "GigaReg shard " + std::to_string( s ) + " " + msg[ static_cast< size_t >( s ) ]; }
    }
    const GigaRegMPI & mpi = gigaregMPI();
    if( mpi.size > 1 )
    {
      int64_t failed = mine.empty() ? 0 : 1;
      if( mpi.comm->ops->allreduce_sum_i64( mpi.comm, &failed, 1 ) != GR_OK ) { mpi.Abort( "MPI reduction of the shard status" ); }
      if( failed && mine.empty() ) { mine = "GigaReg: " + std::to_string( failed ) + " other MPI rank(s) failed (see their error)"; }
    }
    if( !mine.empty() ) { throw itk::ExceptionObject( __FILE__, __LINE__, mine, "GigaRegMetric" ); }
  }

  /** MPI: every rank gets the other ranks' per-plane partials and d loss / d u planes (exact:
   * each plane has one owner and arrives unchanged, in rank = plane order) and the last
   * rank's scalars (it evaluated the last shard). So every rank holds what the one-process
   * run with the same shards holds, bit for bit, and the optimizer steps agree. */
  template< class TWin >
  void GatherRanks( const std::vector< TWin > & win, int sa, int sb, std::vector< double > & partials, float * gradU,
                    double last[ 3 ] ) const
  {
    GigaRegMetricData & D   = this->m_GR;
    const GigaRegMPI &  mpi = gigaregMPI();
    const int           R = mpi.size, N = static_cast< int >( win.size() );
    const int64_t       plane = D.fg.n[ 0 ] * D.fg.n[ 1 ], n = D.fnvox, P = GR_METRIC_PARTIALS;
    std::vector< int64_t > z0( static_cast< size_t >( R ) ), cnt( static_cast< size_t >( R ) );
    for( int r = 0; r < R; ++r ) /* rank r's owned planes [z0, z0 + cnt) */
    {
      const int a = static_cast< int >( static_cast< int64_t >( N ) * r / R ), b = static_cast< int >( static_cast< int64_t >( N ) * ( r + 1 ) / R );
      z0[ static_cast< size_t >( r ) ]  = win[ static_cast< size_t >( a ) ].own0;
      cnt[ static_cast< size_t >( r ) ] = win[ static_cast< size_t >( b - 1 ) ].own1 - z0[ static_cast< size_t >( r ) ];
    }
    const int64_t myz0 = win[ static_cast< size_t >( sa ) ].own0, mycnt = win[ static_cast< size_t >( sb - 1 ) ].own1 - myz0;
    auto gather = [&]( const void * send, int64_t elem, void * recv, const char * what ) {
      std::vector< int64_t > bytes( static_cast< size_t >( R ) );
      for( int r = 0; r < R; ++r ) { bytes[ static_cast< size_t >( r ) ] = cnt[ static_cast< size_t >( r ) ] * elem; }
      gigaregCheck( mpi.comm->ops->allgatherv( mpi.comm, send, mycnt * elem, recv, bytes.data() ), what );
    };
    std::vector< double > all( partials.size() );
    gather( partials.data() + myz0 * P, P * static_cast< int64_t >( sizeof( double ) ), all.data(), "MPI gather of the partial sums" );
    partials.swap( all );
    if( gradU )
    {
      std::vector< float > mine( static_cast< size_t >( mycnt * plane ) ), whole( static_cast< size_t >( n ) );
      for( int c = 0; c < 3; ++c )
      {
        gigaregCheck( D.be->ops->download( D.be, mine.data(), gradU + c * n + myz0 * plane, mine.size() * sizeof( float ) ),
                      "download" );
        gather( mine.data(), plane * static_cast< int64_t >( sizeof( float ) ), whole.data(), "MPI gather of d loss / d u" );
        gigaregCheck( D.be->ops->upload( D.be, gradU + c * n, whole.data(), whole.size() * sizeof( float ) ), "upload" );
      }
    }
    gigaregCheck( mpi.comm->ops->broadcast( mpi.comm, last, 3 * static_cast< int64_t >( sizeof( double ) ), R - 1 ),
                  "MPI broadcast of the last shard's scales" );
  }

  /** GPU slots of a sharded evaluation: 1 on the CPU backend; on a CUDA backend the GPUs from the
   * selected one on (at most N; probed once), with the current level's images uploaded. */
  int ShardDevices( int N ) const
  {
    GigaRegMetricData & D = this->m_GR;
    /* GIGAREG_ELX_TEST_SLOTS=k (tests): on the CPU backend, k single-threaded CPU backends play the
     * GPUs (the threaded multi-backend path, checked against one shard without a GPU). */
    static const int testSlots = std::getenv( "GIGAREG_ELX_TEST_SLOTS" ) ? std::atoi( std::getenv( "GIGAREG_ELX_TEST_SLOTS" ) ) : 0;
    const bool cpu = std::strcmp( D.be->ops->name, "cpu" ) == 0;
    if( N <= 1 || ( cpu && testSlots <= 1 ) ) { return 1; }
    if( !D.probed )
    {
      const int base = D.gpu; /* further GPUs follow the first one (under mpirun: this rank's group) */
      for( int j = 1; j < N && ( !cpu || j < testSlots ); ++j )
      {
        gr_backend * be = nullptr;
        if( ( cpu ? gr_backend_cpu_create( 1, &be ) : gr_backend_create( GR_DEVICE_CUDA, base + j, 0, &be ) ) != GR_OK ) { break; }
        D.extra.emplace_back();
        D.extra.back().be = be;
      }
      D.probed = true;
      if( cpu )
      {
        elxout << "  GigaReg metric: " << N << " shards on " << 1 + D.extra.size()
               << " CPU backends in threads (GIGAREG_ELX_TEST_SLOTS)" << std::endl;
      }
      else
      {
        elxout << "  GigaReg metric: " << N << " shards on " << 1 + D.extra.size() << " GPU(s) (shard s on GPU "
               << base << " + s mod " << 1 + D.extra.size() << ")" << std::endl;
      }
    }
    const int G = static_cast< int >( std::min< size_t >( static_cast< size_t >( N ), 1 + D.extra.size() ) );
    /* copies of the level's images on the further GPUs (through the host) */
    std::vector< float > tmp;
    auto mirror = [&]( GigaRegMetricData::Device & e, float *& dst, const float * src, int64_t cnt ) {
      if( !src ) { return; }
      tmp.resize( static_cast< size_t >( cnt ) );
      gigaregCheck( D.be->ops->download( D.be, tmp.data(), src, static_cast< size_t >( cnt ) * sizeof( float ) ), "download" );
      dst = static_cast< float * >( e.be->ops->alloc( e.be, static_cast< size_t >( cnt ) * sizeof( float ) ) );
      if( !dst ) { gigaregCheck( GR_ERR_NOMEM, "image copy on a further GPU" ); }
      gigaregCheck( e.be->ops->upload( e.be, dst, tmp.data(), static_cast< size_t >( cnt ) * sizeof( float ) ), "upload" );
    };
    for( int g = 1; g < G; ++g )
    {
      GigaRegMetricData::Device & e = D.extra[ static_cast< size_t >( g - 1 ) ];
      if( e.generation == D.generation ) { continue; }
      e.Release();
      mirror( e, e.dF, D.dF, D.fnvox );
      mirror( e, e.dFm, D.dFm, D.fnvox );
      mirror( e, e.dM, D.dM, D.mnvox );
      mirror( e, e.dMm, D.dMm, D.mnvox );
      e.generation = D.generation;
    }
    return G;
  }

  void GigaRegEvaluate( const ParametersType & parameters, MeasureType & value, DerivativeType * derivative ) const
  {
    GigaRegMetricData & D = this->m_GR;
    gr_metric_spec spec;
    std::memset( &spec, 0, sizeof( spec ) );
    double scale     = 1.0;
    int    normalise = 0;
    this->GigaRegSpec( spec, scale, normalise );
    this->PrepareLevel( normalise );
    if( normalise ) { spec.fixed_min = 0; spec.fixed_max = 1; spec.moving_min = 0; spec.moving_max = 1; }
    else { spec.fixed_min = D.flo; spec.fixed_max = D.fhi; spec.moving_min = D.mlo; spec.moving_max = D.mhi; }

    this->SetTransformParameters( parameters );
    AdvancedTransformType * T = this->m_AdvancedTransform.GetPointer();
    const unsigned int      P = this->GetNumberOfParameters();
    if( derivative ) { derivative->SetSize( P ); derivative->Fill( 0.0 ); }
    gr_metric_result res;
    std::memset( &res, 0, sizeof( res ) );

    if( T->IsLinear() )
    {
      /* y = A x + t from the images of 0 and the unit vectors. */
      InputPointType pts[ 4 ];
      for( int c = 0; c < 4; ++c )
      {
        pts[ c ].Fill( 0.0 );
        if( c > 0 ) { pts[ c ][ c - 1 ] = 1.0; }
      }
      typename AdvancedTransformType::OutputPointType y[ 4 ];
      for( int c = 0; c < 4; ++c ) { y[ c ] = T->TransformPoint( pts[ c ] ); }
      gr_affine A;
      for( int r = 0; r < 3; ++r )
      {
        for( int c = 0; c < 3; ++c ) { A.m[ r * 4 + c ] = y[ c + 1 ][ r ] - y[ 0 ][ r ]; }
        A.m[ r * 4 + 3 ] = y[ 0 ][ r ];
      }
      spec.want_affine_grad = derivative ? 1 : 0;
      spec.want_field_grad  = 0;
      auto t0 = std::chrono::steady_clock::now();
      this->CoreMetric( spec, &A, nullptr, res, nullptr );
      D.tMetric += std::chrono::duration< double >( std::chrono::steady_clock::now() - t0 ).count();
      ++D.nEval;
      this->CheckValid( res );
      value = scale * res.value;
      if( derivative )
      {
        /* dy_r/dp at x: J_r(x) = J_r(0) + sum_c x_c (J_r(e_c) - J_r(0)), so
         * dt_r/dp = J_r(0), dA_rc/dp = J_r(e_c) - J_r(0). */
        JacobianType               J[ 4 ];
        NonZeroJacobianIndicesType nz[ 4 ];
        for( int c = 0; c < 4; ++c ) { T->GetJacobian( pts[ c ], J[ c ], nz[ c ] ); }
        std::vector< double > full[ 4 ];
        for( int c = 0; c < 4; ++c )
        {
          full[ c ].assign( static_cast< size_t >( 3 ) * P, 0.0 );
          for( unsigned q = 0; q < nz[ c ].size(); ++q )
          {
            for( int r = 0; r < 3; ++r ) { full[ c ][ r * P + nz[ c ][ q ] ] = J[ c ]( r, q ); }
          }
        }
        for( unsigned k = 0; k < P; ++k )
        {
          double d = 0;
          for( int r = 0; r < 3; ++r )
          {
            const double j0 = full[ 0 ][ r * P + k ];
            d += res.grad_affine[ r * 4 + 3 ] * j0;
            for( int c = 0; c < 3; ++c ) { d += res.grad_affine[ r * 4 + c ] * ( full[ c + 1 ][ r * P + k ] - j0 ); }
          }
          ( *derivative )[ k ] = scale * d;
        }
      }
      return;
    }

    /* Dense path: u(x) = T(x) - x on the fixed grid. */
    const int64_t nx = D.fg.n[ 0 ], ny = D.fg.n[ 1 ], nz = D.fg.n[ 2 ], n = D.fnvox;
    auto t0 = std::chrono::steady_clock::now();
    if( this->FastBSpline( parameters, value, derivative, spec, scale ) ) { return; }
    D.hostU.resize( static_cast< size_t >( 3 * n ) );
    float * U = D.hostU.data();
#pragma omp parallel for schedule(static)
    for( int64_t k = 0; k < nz; ++k )
    {
      for( int64_t j = 0; j < ny; ++j )
      {
        for( int64_t i = 0; i < nx; ++i )
        {
          const int64_t v = ( k * ny + j ) * nx + i;
          double        p[ 3 ];
          gigaregI2P( D.fg, (double)i, (double)j, (double)k, p );
          InputPointType x;
          x[ 0 ] = p[ 0 ]; x[ 1 ] = p[ 1 ]; x[ 2 ] = p[ 2 ];
          const typename AdvancedTransformType::OutputPointType y = T->TransformPoint( x );
          for( int a = 0; a < 3; ++a ) { U[ a * n + v ] = static_cast< float >( y[ a ] - p[ a ] ); }
        }
      }
    }
    this->Upload( D.dU, U, 3 * n );
    std::chrono::steady_clock::time_point t2;
    const float * G = this->DenseFieldMetric( spec, derivative != nullptr, scale, value, t0, t2 );
    if( !G ) { return; }
    /* d loss / d p = sum_x g(x)^T dT/dp(x) */
    const std::vector< double > sum = gigaregGradientSum( nx, ny, nz, G, P, [&]() {
      /* per-thread scratch of the Jacobian product, copied into the thread's function */
      DerivativeType             imageJacobian( T->GetNumberOfNonZeroJacobianIndices() );
      NonZeroJacobianIndicesType nzji( T->GetNumberOfNonZeroJacobianIndices() );
      return [&, imageJacobian, nzji]( int64_t i, int64_t j, int64_t k, const float g3[ 3 ], double * a ) mutable {
        double p[ 3 ];
        gigaregI2P( D.fg, (double)i, (double)j, (double)k, p );
        InputPointType x;
        x[ 0 ] = p[ 0 ]; x[ 1 ] = p[ 1 ]; x[ 2 ] = p[ 2 ];
        MovingImageGradientType g;
        g[ 0 ] = g3[ 0 ]; g[ 1 ] = g3[ 1 ]; g[ 2 ] = g3[ 2 ];
        T->EvaluateJacobianWithImageGradientProduct( x, g, imageJacobian, nzji );
        for( size_t q = 0; q < nzji.size(); ++q ) { a[ nzji[ q ] ] += imageJacobian[ q ]; }
      };
    } );
    for( unsigned k = 0; k < P; ++k ) { ( *derivative )[ k ] = scale * sum[ k ]; }
    D.tChain += std::chrono::duration< double >( std::chrono::steady_clock::now() - t2 ).count();
  }

  /** The core metric of the dense field already in D.dU: `value` (scaled), and with
   * `wantDerivative` the field gradient downloaded to the host (returned; nullptr without;
   * with download false the backend's gradient buffer is returned instead).
   * t0: when the field's construction began; t2: when the metric finished (the chain rule's
   * timer starts there). */
  const float * DenseFieldMetric( gr_metric_spec & spec, bool wantDerivative, double scale, MeasureType & value,
                                  std::chrono::steady_clock::time_point t0,
                                  std::chrono::steady_clock::time_point & t2, bool download = true ) const
  {
    GigaRegMetricData & D = this->m_GR;
    const int64_t       n = D.fnvox;
    if( wantDerivative && !D.dG )
    {
      D.dG = static_cast< float * >( D.be->ops->alloc( D.be, static_cast< size_t >( 3 * n ) * sizeof( float ) ) );
      if( !D.dG ) { gigaregCheck( GR_ERR_NOMEM, "allocation" ); }
    }
    spec.want_affine_grad = 0;
    spec.want_field_grad  = wantDerivative ? 1 : 0;
    gr_metric_result res;
    std::memset( &res, 0, sizeof( res ) );
    const auto t1 = std::chrono::steady_clock::now();
    this->CoreMetric( spec, nullptr, D.dU, res, wantDerivative ? D.dG : nullptr );
    t2 = std::chrono::steady_clock::now();
    D.tField += std::chrono::duration< double >( t1 - t0 ).count();
    D.tMetric += std::chrono::duration< double >( t2 - t1 ).count();
    ++D.nEval;
    this->CheckValid( res );
    value = scale * res.value;
    if( !wantDerivative ) { return nullptr; }
    if( !download ) { return D.dG; }
    D.hostG.resize( static_cast< size_t >( 3 * n ) );
    gigaregCheck( D.be->ops->download( D.be, D.hostG.data(), D.dG, static_cast< size_t >( 3 * n ) * sizeof( float ) ),
      "download" );
    return D.hostG.data();
  }

  /** The dense path for the common case (a cubic B-spline, alone or composed after a linear
   * initial transform: gigaregBSplineOf) without elastix's per-voxel TransformPoint / Jacobian
   * calls: the B-spline is evaluated inside the core (backend.h bspline_field / bspline_grad,
   * on the GPU with a CUDA backend). Only the coefficients go up and their gradient comes
   * down; the dense field and d loss / d u stay on the device. With GigaRegNumberOfDevices > 1
   * each shard's field window is made on its own GPU (no GPU holds the whole field, none goes
   * through the host); the further GPUs' gradient planes return to the first GPU's gradient,
   * where the chain rule runs. Returns false (generic path) for other transforms. */
  bool FastBSpline( const ParametersType & parameters, MeasureType & value, DerivativeType * derivative,
                    gr_metric_spec & spec, double scale ) const
  {
    GigaRegMetricData & D = this->m_GR;
    gr_bspline bs;
    int64_t    G = 0;
    const unsigned P = this->GetNumberOfParameters();
    if( !D.be->ops->bspline_field || !D.be->ops->bspline_grad || parameters.GetSize() != P ||
        !gigaregBSplineOf( this->m_AdvancedTransform.GetPointer(), D.fg, bs, G ) || 3 * G != static_cast< int64_t >( P ) )
    {
      return false;
    }
    const int64_t n = D.fnvox;
    auto t0 = std::chrono::steady_clock::now();
    if( D.nCoef != G )
    {
      D.FreeBuf( D.dCoef );
      D.FreeBuf( D.dDcoef );
      D.dCoef  = static_cast< double * >( D.be->ops->alloc( D.be, static_cast< size_t >( 3 * G ) * sizeof( double ) ) );
      D.dDcoef = static_cast< double * >( D.be->ops->alloc( D.be, static_cast< size_t >( 3 * G ) * sizeof( double ) ) );
      if( !D.dCoef || !D.dDcoef ) { gigaregCheck( GR_ERR_NOMEM, "B-spline coefficient allocation" ); }
      D.nCoef = G;
    }
    if( !D.dU && D.ndev <= 1 )
    {
      D.dU = static_cast< float * >( D.be->ops->alloc( D.be, static_cast< size_t >( 3 * n ) * sizeof( float ) ) );
      if( !D.dU ) { gigaregCheck( GR_ERR_NOMEM, "allocation" ); }
    }
    gigaregCheck( D.be->ops->upload( D.be, D.dCoef, parameters.data_block(), static_cast< size_t >( 3 * G ) * sizeof( double ) ),
      "upload" );
    bs.coef = D.dCoef;
    std::chrono::steady_clock::time_point t2;
    const float * Gd = nullptr;
    if( D.ndev > 1 )
    {
      /* every shard's field window is made on its own GPU (bitwise the whole field's planes:
       * gr_bspline.z0); further GPUs get the coefficients once per evaluation */
      const long            evalId = D.nEval;
      const double * const  hc     = parameters.data_block();
      this->m_ShardField = [&, evalId, hc]( gr_backend * sbe, int slot, int64_t z0, int64_t nz, float * dwin ) -> gr_status {
        gr_bspline b = bs;
        if( slot > 0 )
        {
          GigaRegMetricData::Device & e = D.extra[ static_cast< size_t >( slot - 1 ) ];
          if( e.nCoef != G )
          {
            e.Free( e.dCoef );
            e.dCoef = static_cast< double * >( sbe->ops->alloc( sbe, static_cast< size_t >( 3 * G ) * sizeof( double ) ) );
            if( !e.dCoef ) { return GR_ERR_NOMEM; }
            e.nCoef = G;
            e.coefEval = -1;
          }
          if( e.coefEval != evalId )
          {
            const gr_status u = sbe->ops->upload( sbe, e.dCoef, hc, static_cast< size_t >( 3 * G ) * sizeof( double ) );
            if( u != GR_OK ) { return u; }
            e.coefEval = evalId;
          }
          b.coef = e.dCoef;
        }
        b.z0 = z0;
        gr_grid gw = D.fg;
        gw.n[ 2 ] = nz;
        return sbe->ops->bspline_field( sbe, &gw, &b, dwin );
      };
      try
      {
        Gd = this->DenseFieldMetric( spec, derivative != nullptr, scale, value, t0, t2, false );
      }
      catch( ... )
      {
        this->m_ShardField = nullptr;
        throw;
      }
      this->m_ShardField = nullptr;
    }
    else
    {
      gigaregCheck( D.be->ops->bspline_field( D.be, &D.fg, &bs, D.dU ), "B-spline field" );
      Gd = this->DenseFieldMetric( spec, derivative != nullptr, scale, value, t0, t2, false );
    }
    if( !Gd ) { return true; }
    gigaregCheck( D.be->ops->bspline_grad( D.be, &D.fg, &bs, Gd, D.dDcoef ), "B-spline chain rule" );
    D.hostDcoef.resize( static_cast< size_t >( 3 * G ) );
    gigaregCheck( D.be->ops->download( D.be, D.hostDcoef.data(), D.dDcoef, static_cast< size_t >( 3 * G ) * sizeof( double ) ),
      "download" );
    for( unsigned k = 0; k < P; ++k ) { ( *derivative )[ k ] = scale * D.hostDcoef[ k ]; }
    D.tChain += std::chrono::duration< double >( std::chrono::steady_clock::now() - t2 ).count();
    return true;
  }

  /** elastix's rule: at least RequiredRatioOfValidSamples (0.25) of the samples map inside the moving image. */
  void CheckValid( const gr_metric_result & res ) const
  {
    const GigaRegMetricData & D = this->m_GR;
    if( static_cast< double >( res.n_valid ) < this->GetRequiredRatioOfValidSamples() * static_cast< double >( D.fmaskCount )
      || res.n_valid == 0 )
    {
      std::ostringstream os;
      os << "Too many samples map outside moving image buffer: " << res.n_valid << " / " << D.fmaskCount;
      throw itk::ExceptionObject( __FILE__, __LINE__, os.str(), "GigaRegMetric" );
    }
  }

private:
  GigaRegMetric( const GigaRegMetric & ) = delete;
  void operator=( const GigaRegMetric & ) = delete;
};

} // end namespace elastix

#endif
