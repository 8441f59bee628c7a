/*=========================================================================
 * GigaReg ITK layer: the non-template glue between ITK objects and the C core
 * (module/include/gigareg). Images cross the seam as float planes in ITK's own
 * LPS physical space, so geometry is copied, never re-derived.
 *=========================================================================*/
#ifndef itkGigaRegCore_h
#define itkGigaRegCore_h

#include <memory>
#include <string>

#include "itkImage.h"
#include "itkImageRegionConstIterator.h"
#include "itkSpatialObject.h"
#include "itkTransform.h"
#include "itkVector.h"

extern "C" {
#include "gigareg/backend.h"
#include "gigareg/image.h"
#include "gigareg/registration.h"
#include "gigareg/transform.h"
}

namespace itk
{
namespace gigareg
{
using FloatImageType = Image<float, 3>;
using DisplacementFieldType = Image<Vector<double, 3>, 3>;
using TransformType = Transform<double, 3, 3>;
using MaskType = SpatialObject<3>;

struct GrImageDeleter
{
  void
  operator()(gr_image * p) const
  {
    gr_image_destroy(p);
  }
};
using GrImagePointer = std::unique_ptr<gr_image, GrImageDeleter>;

/** Backends are heavy (thread pools, GPU contexts) and not tied to one filter,
 * so every GigaReg object shares them through this handle. */
using BackendPointer = std::shared_ptr<gr_backend>;

/** "cpu", "cuda", "cuda:N" or "auto"; threads 0 = the OpenMP default. */
BackendPointer
MakeBackend(const std::string & device, int threads = 0);

/** Backend memory released on scope exit (exceptions included). */
class DeviceBuffer
{
public:
  DeviceBuffer(gr_backend * be, float * p)
    : m_Backend(be)
    , m_Pointer(p)
  {}
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &
  operator=(const DeviceBuffer &) = delete;
  ~DeviceBuffer()
  {
    if (m_Pointer)
    {
      m_Backend->ops->free(m_Backend, m_Pointer);
    }
  }
  float *
  get() const
  {
    return m_Pointer;
  }
  float *
  release()
  {
    float * p = m_Pointer;
    m_Pointer = nullptr;
    return p;
  }

private:
  gr_backend * m_Backend;
  float *      m_Pointer;
};

/** Turns a core status into an itk::ExceptionObject carrying the core's
 * thread-local message (what failed and why), so ITK callers see one error path. */
void
ThrowIfError(gr_status s, const char * what, const char * file, unsigned int line);
#define itkGigaRegCheck(expr, what) ::itk::gigareg::ThrowIfError((expr), (what), __FILE__, __LINE__)

gr_geometry
GeometryFromImage(const ImageBase<3> * image);
gr_geometry
GeometryFromGrid(const typename ImageBase<3>::PointType &     origin,
                 const typename ImageBase<3>::SpacingType &   spacing,
                 const typename ImageBase<3>::DirectionType & direction,
                 const typename ImageBase<3>::SizeType &      size);
void
GeometryToImage(const gr_geometry & g, ImageBase<3> * image);

/** Scalar image -> one float plane (x fastest, as ITK stores it). The optional
 * intensity map (v - lo) * scale is what the registration driver applies
 * before its metrics, so metric values from ITK match the core's. */
template <typename TImage>
GrImagePointer
ImageToGr(const TImage * image, double lo = 0.0, double scale = 1.0)
{
  const gr_geometry g = GeometryFromImage(image);
  gr_image *        out = nullptr;
  ThrowIfError(gr_image_create(&g, 1, &out), "image conversion", __FILE__, __LINE__);
  GrImagePointer                   res(out);
  ImageRegionConstIterator<TImage> it(image, image->GetBufferedRegion());
  float *                          d = out->data;
  for (it.GoToBegin(); !it.IsAtEnd(); ++it)
  {
    *d++ = static_cast<float>((static_cast<double>(it.Get()) - lo) * scale);
  }
  return res;
}

FloatImageType::Pointer
GrToImage(const gr_image * img);

/** Planes (core) <-> interleaved vectors (ITK). */
DisplacementFieldType::Pointer
GrToDisplacementField(const gr_image * field);
GrImagePointer
DisplacementFieldToGr(const DisplacementFieldType * field);

/** min/max of a float plane, optionally where mask > 0.5. */
void
PlaneRange(const gr_image * img, const gr_image * mask, double & lo, double & hi);

/** A spatial-object mask rasterised on a grid as 0/1 floats (the core reads
 * masks as images sharing their image's grid), tested at through(x) when a
 * transform is given (ITK tests a fixed mask at the mapped fixed point).
 * nullptr mask -> nullptr. */
GrImagePointer
RasteriseMask(const MaskType * mask, const gr_geometry & grid, const TransformType * through = nullptr);

/** A mask image of any scalar pixel type -> 0/1 floats on its own grid (> 0 is
 * inside). nullptr -> nullptr. */
GrImagePointer
MaskImageToGr(const ImageBase<3> * mask);

/** [A | t] of a linear transform, read off its action on four points: exact for
 * every MatrixOffsetTransformBase and for composites of them, whatever their
 * parametrisation or centre. Returns false for a non-linear transform. */
bool
LinearTransformToAffine(const TransformType * t, gr_affine & a);

/** The core's composite form y = A (x + u(x)) + t on `grid`:
 *  - linear transforms: u empty;
 *  - a DisplacementFieldTransform (alone, or applied first in a composite whose
 *    other members are linear) whose field lies on `grid`: u is that field and A
 *    the linear rest; *fieldIsParameters = true (the derivative w.r.t. u is the
 *    derivative w.r.t. the transform's parameters);
 *  - anything else: A = identity and u(x) = T(x) - x evaluated on the grid
 *    (so every ITK transform can be applied, only values are exact-by-construction).
 */
struct CompositeForm
{
  gr_affine      affine;
  GrImagePointer disp;
  bool           fieldIsParameters = false;
  bool           linear = false;
};
CompositeForm
DecomposeTransform(const TransformType * t, const gr_geometry & grid, bool denseFallback = true);

/** d loss / d p for a linear moving transform from the core's d loss / d [A | t]:
 * y(x) = J(x) p-linearisation is affine in x for linear transforms, so the
 * Jacobian w.r.t. the (optimised) parameters at the origin and at the three unit
 * points gives d[A|t]/dp exactly (composites included: ITK's composite Jacobian
 * already restricts to the transforms being optimised). */
void
AffineGradientToParameters(const TransformType * t, const double gradAffine[12], double * out, unsigned int n);

} // namespace gigareg
} // namespace itk

#endif
