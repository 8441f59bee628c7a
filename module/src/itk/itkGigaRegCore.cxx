/*=========================================================================
 * GigaReg ITK layer: non-template glue (compiled once, so the header templates
 * stay small and the ITK layer builds quickly on two cores).
 *=========================================================================*/
#include "itkGigaRegCore.h"

#include <cstring>
#include <sstream>

#include "itkCompositeTransform.h"
#include "itkDisplacementFieldTransform.h"
#include "itkImageRegionIteratorWithIndex.h"

namespace itk
{
namespace gigareg
{

BackendPointer
MakeBackend(const std::string & device, int threads)
{
  gr_device_kind kind = GR_DEVICE_AUTO;
  int            index = 0;
  ThrowIfError(gr_device_parse(device.c_str(), &kind, &index), "backend name", __FILE__, __LINE__);
  gr_backend * be = nullptr;
  ThrowIfError(gr_backend_create(kind, index, threads, &be), "backend creation", __FILE__, __LINE__);
  return BackendPointer(be, [](gr_backend * b) { gr_backend_destroy(b); });
}

void
ThrowIfError(gr_status s, const char * what, const char * file, unsigned int line)
{
  if (s == GR_OK)
  {
    return;
  }
  std::ostringstream msg;
  msg << "GigaReg " << what << ": " << gr_strerror(s);
  const char * detail = gr_last_error();
  if (detail && *detail)
  {
    msg << ": " << detail;
  }
  throw ExceptionObject(file, line, msg.str(), "GigaReg");
}

gr_geometry
GeometryFromGrid(const ImageBase<3>::PointType &     origin,
                 const ImageBase<3>::SpacingType &   spacing,
                 const ImageBase<3>::DirectionType & direction,
                 const ImageBase<3>::SizeType &      size)
{
  gr_geometry g;
  for (unsigned int a = 0; a < 3; ++a)
  {
    g.size[a] = static_cast<int64_t>(size[a]);
    g.spacing[a] = spacing[a];
    g.origin[a] = origin[a];
    for (unsigned int c = 0; c < 3; ++c)
    {
      g.direction[a * 3 + c] = direction(a, c);
    }
  }
  return g;
}

gr_geometry
GeometryFromImage(const ImageBase<3> * image)
{
  // The buffered region may start at a non-zero index: the core's grid starts
  // at index 0, so its origin is the physical point of the region's first voxel.
  const auto &              region = image->GetBufferedRegion();
  ImageBase<3>::PointType   origin;
  image->TransformIndexToPhysicalPoint(region.GetIndex(), origin);
  return GeometryFromGrid(origin, image->GetSpacing(), image->GetDirection(), region.GetSize());
}

void
GeometryToImage(const gr_geometry & g, ImageBase<3> * image)
{
  ImageBase<3>::PointType     origin;
  ImageBase<3>::SpacingType   spacing;
  ImageBase<3>::DirectionType direction;
  ImageBase<3>::SizeType      size;
  for (unsigned int a = 0; a < 3; ++a)
  {
    origin[a] = g.origin[a];
    spacing[a] = g.spacing[a];
    size[a] = static_cast<SizeValueType>(g.size[a]);
    for (unsigned int c = 0; c < 3; ++c)
    {
      direction(a, c) = g.direction[a * 3 + c];
    }
  }
  image->SetOrigin(origin);
  image->SetSpacing(spacing);
  image->SetDirection(direction);
  ImageBase<3>::RegionType region;
  region.SetSize(size);
  image->SetRegions(region);
}

FloatImageType::Pointer
GrToImage(const gr_image * img)
{
  auto out = FloatImageType::New();
  GeometryToImage(img->geom, out);
  out->Allocate();
  std::memcpy(out->GetBufferPointer(), img->data, sizeof(float) * static_cast<size_t>(gr_image_nvox(img)));
  return out;
}

DisplacementFieldType::Pointer
GrToDisplacementField(const gr_image * field)
{
  auto out = DisplacementFieldType::New();
  GeometryToImage(field->geom, out);
  out->Allocate();
  const int64_t n = gr_image_nvox(field);
  auto *        d = out->GetBufferPointer();
  for (int64_t v = 0; v < n; ++v)
  {
    for (unsigned int a = 0; a < 3; ++a)
    {
      d[v][a] = static_cast<double>(field->data[a * n + v]);
    }
  }
  return out;
}

GrImagePointer
DisplacementFieldToGr(const DisplacementFieldType * field)
{
  const gr_geometry g = GeometryFromImage(field);
  gr_image *        raw = nullptr;
  ThrowIfError(gr_image_create(&g, 3, &raw), "field conversion", __FILE__, __LINE__);
  GrImagePointer out(raw);
  const int64_t  n = gr_image_nvox(raw);
  const auto *   d = field->GetBufferPointer();
  for (int64_t v = 0; v < n; ++v)
  {
    for (unsigned int a = 0; a < 3; ++a)
    {
      raw->data[a * n + v] = static_cast<float>(d[v][a]);
    }
  }
  return out;
}

void
PlaneRange(const gr_image * img, const gr_image * mask, double & lo, double & hi)
{
  const int64_t n = gr_image_nvox(img);
  lo = NumericTraits<double>::max();
  hi = NumericTraits<double>::NonpositiveMin();
  for (int64_t v = 0; v < n; ++v)
  {
    if (mask && !(mask->data[v] > 0.5f))
    {
      continue;
    }
    const double x = img->data[v];
    lo = x < lo ? x : lo;
    hi = x > hi ? x : hi;
  }
  if (lo > hi)
  {
    lo = hi = 0.0;
  }
}

namespace
{
/* Calls fn(v, p) for every voxel of `grid`, x fastest: v the linear index, p its
 * physical point (LPS). */
template <typename TFunction>
void
ForEachGridPoint(const gr_geometry & grid, TFunction fn)
{
  int64_t v = 0;
  for (int64_t k = 0; k < grid.size[2]; ++k)
  {
    for (int64_t j = 0; j < grid.size[1]; ++j)
    {
      for (int64_t i = 0; i < grid.size[0]; ++i, ++v)
      {
        const double idx[3] = { static_cast<double>(i), static_cast<double>(j), static_cast<double>(k) };
        double       p[3];
        gr_geometry_index_to_phys(&grid, idx, p);
        fn(v, p);
      }
    }
  }
}
} // namespace

GrImagePointer
RasteriseMask(const MaskType * mask, const gr_geometry & grid, const TransformType * through)
{
  if (!mask)
  {
    return GrImagePointer();
  }
  gr_image * raw = nullptr;
  ThrowIfError(gr_image_create(&grid, 1, &raw), "mask rasterisation", __FILE__, __LINE__);
  GrImagePointer out(raw);
  ForEachGridPoint(grid, [&](int64_t v, const double p[3]) {
    MaskType::PointType pt;
    pt[0] = p[0];
    pt[1] = p[1];
    pt[2] = p[2];
    if (through)
    {
      pt = through->TransformPoint(pt);
    }
    raw->data[v] = mask->IsInsideInWorldSpace(pt) ? 1.0f : 0.0f;
  });
  return out;
}

namespace
{
template <typename TPixel>
bool
TryMask(const ImageBase<3> * mask, GrImagePointer & out)
{
  const auto * img = dynamic_cast<const Image<TPixel, 3> *>(mask);
  if (!img)
  {
    return false;
  }
  out = ImageToGr(img);
  const int64_t n = gr_image_nvox(out.get());
  for (int64_t v = 0; v < n; ++v)
  {
    out->data[v] = out->data[v] > 0.0f ? 1.0f : 0.0f;
  }
  return true;
}
} // namespace

GrImagePointer
MaskImageToGr(const ImageBase<3> * mask)
{
  GrImagePointer out;
  if (!mask || TryMask<unsigned char>(mask, out) || TryMask<char>(mask, out) || TryMask<signed char>(mask, out) ||
      TryMask<unsigned short>(mask, out) || TryMask<short>(mask, out) || TryMask<unsigned int>(mask, out) ||
      TryMask<int>(mask, out) || TryMask<float>(mask, out) || TryMask<double>(mask, out))
  {
    return out;
  }
  throw ExceptionObject(__FILE__, __LINE__, std::string("GigaReg: unsupported mask image type ") +
                                              mask->GetNameOfClass(), "GigaReg");
}

bool
LinearTransformToAffine(const TransformType * t, gr_affine & a)
{
  if (!t->IsLinear())
  {
    return false;
  }
  TransformType::InputPointType x;
  x.Fill(0.0);
  const auto y0 = t->TransformPoint(x);
  for (unsigned int c = 0; c < 3; ++c)
  {
    x.Fill(0.0);
    x[c] = 1.0;
    const auto y = t->TransformPoint(x);
    for (unsigned int r = 0; r < 3; ++r)
    {
      a.m[r * 4 + c] = y[r] - y0[r];
    }
  }
  for (unsigned int r = 0; r < 3; ++r)
  {
    a.m[r * 4 + 3] = y0[r];
  }
  return true;
}

namespace
{
using CompositeType = CompositeTransform<double, 3>;
using FieldTransformType = DisplacementFieldTransform<double, 3>;

bool
SameGrid(const DisplacementFieldType * field, const gr_geometry & grid)
{
  const gr_geometry g = GeometryFromImage(field);
  return gr_geometry_same(&g, &grid) != 0;
}

GrImagePointer
DenseDisplacement(const TransformType * t, const gr_geometry & grid)
{
  gr_image * raw = nullptr;
  ThrowIfError(gr_image_create(&grid, 3, &raw), "dense transform evaluation", __FILE__, __LINE__);
  GrImagePointer out(raw);
  const int64_t  n = gr_image_nvox(raw);
  ForEachGridPoint(grid, [&](int64_t v, const double p[3]) {
    TransformType::InputPointType x;
    x[0] = p[0];
    x[1] = p[1];
    x[2] = p[2];
    const auto y = t->TransformPoint(x);
    for (unsigned int a = 0; a < 3; ++a)
    {
      raw->data[a * n + v] = static_cast<float>(y[a] - p[a]);
    }
  });
  return out;
}
} // namespace

CompositeForm
DecomposeTransform(const TransformType * t, const gr_geometry & grid, bool denseFallback)
{
  CompositeForm f;
  gr_affine_identity(&f.affine);
  if (LinearTransformToAffine(t, f.affine))
  {
    f.linear = true;
    return f;
  }
  // The displacement must act first (y = A (x + u(x)) + t): a lone field
  // transform, or the back of a composite (applied first) whose rest is linear.
  const FieldTransformType * fieldTransform = dynamic_cast<const FieldTransformType *>(t);
  auto                       linearRest = CompositeType::New();
  if (!fieldTransform)
  {
    const auto * composite = dynamic_cast<const CompositeType *>(t);
    if (composite && composite->GetNumberOfTransforms() > 0)
    {
      const SizeValueType last = composite->GetNumberOfTransforms() - 1;
      fieldTransform = dynamic_cast<const FieldTransformType *>(composite->GetNthTransformConstPointer(last));
      for (SizeValueType n = 0; fieldTransform && n < last; ++n)
      {
        auto * sub = const_cast<TransformType *>(composite->GetNthTransformConstPointer(n));
        if (!sub->IsLinear())
        {
          fieldTransform = nullptr;
        }
        else
        {
          linearRest->AddTransform(sub);
        }
      }
    }
  }
  if (fieldTransform && fieldTransform->GetDisplacementField() &&
      SameGrid(fieldTransform->GetDisplacementField(), grid))
  {
    if (linearRest->GetNumberOfTransforms() > 0)
    {
      LinearTransformToAffine(linearRest, f.affine);
    }
    f.disp = DisplacementFieldToGr(fieldTransform->GetDisplacementField());
    f.fieldIsParameters = true;
    return f;
  }
  if (!denseFallback)
  {
    throw ExceptionObject(__FILE__, __LINE__,
                          std::string("GigaReg: transform ") + t->GetNameOfClass() +
                            " is neither linear nor a displacement field on the virtual grid",
                          "GigaReg");
  }
  f.disp = DenseDisplacement(t, grid);
  return f;
}

void
AffineGradientToParameters(const TransformType * t, const double gradAffine[12], double * out, unsigned int n)
{
  TransformType::JacobianType   J0, Jc;
  TransformType::InputPointType x;
  x.Fill(0.0);
  t->ComputeJacobianWithRespectToParameters(x, J0);
  for (unsigned int k = 0; k < n; ++k)
  {
    double s = 0.0;
    for (unsigned int r = 0; r < 3; ++r)
    {
      s += gradAffine[r * 4 + 3] * J0(r, k);
    }
    out[k] = s;
  }
  for (unsigned int c = 0; c < 3; ++c)
  {
    x.Fill(0.0);
    x[c] = 1.0;
    t->ComputeJacobianWithRespectToParameters(x, Jc);
    for (unsigned int k = 0; k < n; ++k)
    {
      double s = 0.0;
      for (unsigned int r = 0; r < 3; ++r)
      {
        s += gradAffine[r * 4 + c] * (Jc(r, k) - J0(r, k));
      }
      out[k] += s;
    }
  }
}

} // namespace gigareg
} // namespace itk
