/* GigaRegResampleImageFilter against ResampleImageFilter + LinearInterpolateImageFunction
 * for an affine + displacement composite on real data, the point interpolator
 * against LinearInterpolateImageFunction, and the object-factory override. */
#include "itkGigaRegTestCommon.h"

#include "itkAffineTransform.h"
#include "itkCompositeTransform.h"
#include "itkDisplacementFieldTransform.h"
#include "itkGigaRegImageFilterFactory.h"
#include "itkGigaRegLinearInterpolateImageFunction.h"
#include "itkGigaRegResampleImageFilter.h"
#include "itkLinearInterpolateImageFunction.h"
#include "itkResampleImageFilter.h"

namespace
{
using namespace grtest;
using FieldType = itk::Image<itk::Vector<double, 3>, 3>;
using CompositeType = itk::CompositeTransform<double, 3>;
using ResampleType = itk::ResampleImageFilter<ImageType, ImageType>;
using GigaResampleType = itk::GigaRegResampleImageFilter<ImageType>;

/* Smooth displacement (a few mm) on `grid`. */
FieldType::Pointer
MakeField(const ImageType * grid, double amplitude)
{
  auto f = FieldType::New();
  f->CopyInformation(grid);
  f->SetRegions(grid->GetBufferedRegion());
  f->Allocate();
  itk::ImageRegionIteratorWithIndex<FieldType> it(f, f->GetBufferedRegion());
  for (; !it.IsAtEnd(); ++it)
  {
    ImageType::PointType p;
    f->TransformIndexToPhysicalPoint(it.GetIndex(), p);
    FieldType::PixelType d;
    d[0] = amplitude * std::sin(p[1] / 17.0) * std::cos(p[2] / 23.0);
    d[1] = amplitude * std::cos(p[0] / 19.0);
    d[2] = 0.5 * amplitude * std::sin((p[0] + p[1]) / 29.0);
    it.Set(d);
  }
  return f;
}

CompositeType::Pointer
MakeComposite(const ImageType * fieldGrid, const ImageType * fixed)
{
  auto affine = itk::AffineTransform<double, 3>::New();
  itk::Point<double, 3> c;
  const auto            r = fixed->GetBufferedRegion();
  itk::ContinuousIndex<double, 3> ci;
  for (unsigned a = 0; a < 3; ++a)
    ci[a] = 0.5 * (r.GetSize(a) - 1);
  fixed->TransformContinuousIndexToPhysicalPoint(ci, c);
  affine->SetCenter(c);
  affine->Rotate3D(itk::Vector<double, 3>(std::vector<double>{ 0.2, 0.3, 1.0 }.data()), 0.08);
  affine->Shear(0, 2, 0.04);
  itk::Vector<double, 3> t;
  t[0] = 2.5; t[1] = -3.0; t[2] = 1.5;
  affine->Translate(t);
  auto disp = itk::DisplacementFieldTransform<double, 3>::New();
  disp->SetDisplacementField(MakeField(fieldGrid, 3.0));
  auto composite = CompositeType::New();
  composite->AddTransform(affine); // applied second
  composite->AddTransform(disp);   // applied first: y = A (x + u(x)) + t, the core's form
  return composite;
}

template <typename TFilter>
ImageType::Pointer
Run(TFilter * f, const ImageType * input, const ImageType * ref, const itk::Transform<double, 3, 3> * t)
{
  f->SetInput(input);
  f->SetTransform(t);
  f->SetOutputParametersFromImage(ref);
  f->SetDefaultPixelValue(-1.0f);
  f->Update();
  ImageType::Pointer out = f->GetOutput();
  out->DisconnectPipeline();
  return out;
}

struct Diff
{
  double maxAbs, range;
  size_t insideMismatch, n;
};

Diff
Compare(const ImageType * a, const ImageType * b)
{
  Diff         d{ 0.0, 0.0, 0, a->GetBufferedRegion().GetNumberOfPixels() };
  float        lo = 1e30f, hi = -1e30f;
  for (size_t i = 0; i < d.n; ++i)
  {
    const float x = a->GetBufferPointer()[i], y = b->GetBufferPointer()[i];
    lo = std::min(lo, y);
    hi = std::max(hi, y);
    if ((x == -1.0f) != (y == -1.0f))
    {
      ++d.insideMismatch;
      continue;
    }
    d.maxAbs = std::max(d.maxAbs, static_cast<double>(std::abs(x - y)));
  }
  d.range = hi - lo;
  return d;
}
} // namespace

int
itkGigaRegResampleTest(int, char *[])
{
  auto fixed = ReadShrunk("chris_t1.nii.gz", 3, 3, 3);
  auto moving = ReadShrunk("chris_PD.nii.gz", 2, 2, 1);
  auto coarse = ReadShrunk("chris_t1.nii.gz", 6, 6, 6);
  // Field on the output grid (direct path) and on a coarser grid (dense evaluation path).
  const ImageType * fieldGrids[2] = { fixed, coarse };
  const char *      names[2] = { "field on output grid", "field on coarser grid" };
  for (int k = 0; k < 2; ++k)
  {
    auto composite = MakeComposite(fieldGrids[k], fixed);
    auto ref = ResampleType::New();
    ref->SetInterpolator(itk::LinearInterpolateImageFunction<ImageType, double>::New());
    auto giga = GigaResampleType::New();
    auto a = Run(giga.GetPointer(), moving, fixed, composite);
    auto b = Run(ref.GetPointer(), moving, fixed, composite);
    const Diff d = Compare(a, b);
    std::printf("resample (%s): max |gigareg - itk| = %.3g (%.3g of range %.1f), inside/outside mismatches %zu of %zu "
                "voxels (tol 1e-5 of range, 0.01%% of voxels)\n",
                names[k], d.maxAbs, d.maxAbs / d.range, d.range, d.insideMismatch, d.n);
    GR_CHECK(giga->GetUsedCore(), "core path not taken");
    GR_CHECK(d.maxAbs <= 1e-5 * d.range, "resampled values differ");
    GR_CHECK(d.insideMismatch * 10000 <= d.n, "inside-buffer rule differs");
  }

  // Point interpolator: random continuous indices inside the buffer, border band included.
  auto gi = itk::GigaRegLinearInterpolateImageFunction<ImageType>::New();
  auto li = itk::LinearInterpolateImageFunction<ImageType, double>::New();
  gi->SetInputImage(moving);
  li->SetInputImage(moving);
  double   worst = 0.0;
  unsigned s = 7;
  for (int q = 0; q < 2000; ++q)
  {
    itk::ContinuousIndex<double, 3> c;
    for (unsigned a = 0; a < 3; ++a)
    {
      s = s * 1664525u + 1013904223u;
      c[a] = -0.5 + (moving->GetBufferedRegion().GetSize(a) - 1e-9) * ((s >> 8) / 16777216.0);
    }
    if (!li->IsInsideBuffer(c))
      continue;
    worst = std::max(worst, std::abs(gi->EvaluateAtContinuousIndex(c) - li->EvaluateAtContinuousIndex(c)));
  }
  std::printf("interpolator: max |gigareg - itk| over 2000 points = %.3g (tol 1e-3 intensity units, float input)\n",
              worst);
  GR_CHECK(worst <= 1e-3, "interpolator differs");
  return EXIT_SUCCESS;
}

int
itkGigaRegFactoryTest(int, char *[])
{
  auto fixed = ReadShrunk("chris_t1.nii.gz", 3, 3, 3);
  auto moving = ReadShrunk("chris_PD.nii.gz", 2, 2, 1);
  auto composite = MakeComposite(fixed, fixed);
  auto before = ResampleType::New();
  GR_CHECK(dynamic_cast<GigaResampleType *>(before.GetPointer()) == nullptr, "override active before registration");
  auto reference = Run(before.GetPointer(), moving, fixed, composite);

  itk::GigaRegFactory::RegisterOneFactory();
  itk::GigaRegFactory::RegisterOneFactory(); // idempotent
  auto after = ResampleType::New();
  auto * giga = dynamic_cast<GigaResampleType *>(after.GetPointer());
  GR_CHECK(giga != nullptr, "ResampleImageFilter::New() did not return the GigaReg filter (got %s)",
           after->GetNameOfClass());
  auto       out = Run(after.GetPointer(), moving, fixed, composite);
  const Diff d = Compare(out, reference);
  std::printf("factory: ResampleImageFilter::New() -> %s; max diff to ITK %.3g of range, mismatches %zu\n",
              after->GetNameOfClass(), d.maxAbs / d.range, d.insideMismatch);
  GR_CHECK(giga->GetUsedCore(), "core path not taken");
  GR_CHECK(d.maxAbs <= 1e-5 * d.range && d.insideMismatch * 10000 <= d.n, "factory filter output differs");
  return EXIT_SUCCESS;
}
