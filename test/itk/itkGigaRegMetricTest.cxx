/* GigaReg metrics against ITK's own on real images (chris_t1 / chris_PD):
 * value, derivative direction (cosine) for a rigid and an affine transform, and
 * the minimum of a 1-D translation sweep. Tolerances are printed with the
 * measured numbers (docs/itk.md records them). */
#include "itkGigaRegTestCommon.h"

#include "itkANTSNeighborhoodCorrelationImageToImageMetricv4.h"
#include "itkAffineTransform.h"
#include "itkDisplacementFieldTransform.h"
#include "itkEuler3DTransform.h"
#include "itkImageRegionIteratorWithIndex.h"
#include "itkGigaRegLocalNormalizedCorrelationImageToImageMetricv4.h"
#include "itkGigaRegMattesMutualInformationImageToImageMetricv4.h"
#include "itkMattesMutualInformationImageToImageMetricv4.h"
#include "itkTimeProbe.h"

#include <algorithm>
#include <utility>

namespace
{
using namespace grtest;
using EulerType = itk::Euler3DTransform<double>;
using AffineType = itk::AffineTransform<double, 3>;
using TransformBase = itk::Transform<double, 3, 3>;

itk::Point<double, 3>
Center(const ImageType * img)
{
  const auto &                   r = img->GetBufferedRegion();
  itk::ContinuousIndex<double, 3> c;
  for (unsigned int a = 0; a < 3; ++a)
    c[a] = r.GetIndex(a) + 0.5 * (r.GetSize(a) - 1);
  itk::Point<double, 3> p;
  img->TransformContinuousIndexToPhysicalPoint(c, p);
  return p;
}

template <typename TMetric>
void
Setup(TMetric * m, ImageType * fixed, ImageType * moving, MaskType * mask, TransformBase * t)
{
  m->SetFixedImage(fixed);
  m->SetMovingImage(moving);
  m->SetMovingTransform(t);
  if (mask)
    m->SetFixedImageMask(mask);
  m->Initialize();
}

struct Eval
{
  double            value;
  itk::Array<double> deriv;
  double            seconds;
};

template <typename TMetric>
Eval
Evaluate(TMetric * m)
{
  Eval          e;
  itk::TimeProbe clock;
  clock.Start();
  typename TMetric::DerivativeType d;
  m->GetValueAndDerivative(e.value, d);
  clock.Stop();
  e.deriv = d;
  e.seconds = clock.GetTotal();
  return e;
}

/* The GigaReg derivative against central differences of its own value: checks
 * the chain rule d loss/d[A|t] -> d loss/d p (Jacobians at four points) and the
 * sign convention (derivative = -gradient). */
template <typename TGiga>
int
FiniteDifferenceCheck(const char * label, const char * name, TGiga * giga, TransformBase * t, double ratioTol)
{
  typename TGiga::DerivativeType d;
  double                         v;
  giga->GetValueAndDerivative(v, d);
  const auto          p0 = t->GetParameters();
  itk::Array<double>  fd(p0.GetSize());
  for (unsigned int k = 0; k < p0.GetSize(); ++k)
  {
    // Angles and matrix entries are O(1), translations in mm.
    const bool   translation = k >= p0.GetSize() - 3;
    const double h = translation ? 1e-2 : 1e-4;
    auto         p = p0;
    p[k] = p0[k] + h;
    t->SetParameters(p);
    const double vp = giga->GetValue();
    p[k] = p0[k] - h;
    t->SetParameters(p);
    const double vm = giga->GetValue();
    fd[k] = -(vp - vm) / (2.0 * h);
  }
  t->SetParameters(p0);
  const double cosine = Cosine(d, fd), ratio = d.two_norm() / fd.two_norm();
  std::printf("%s %s: derivative vs central differences of the GigaReg value: cosine %.5f (min 0.99), norm ratio "
              "%.4f (tol 1 +- %.2f)\n",
              label, name, cosine, ratio, ratioTol);
  GR_CHECK(cosine >= 0.99 && std::abs(ratio - 1.0) <= ratioTol, "%s %s chain rule / sign", label, name);
  return EXIT_SUCCESS;
}

/* Compares the two metrics at a rigid and an affine transform, then sweeps a
 * translation along x and compares where the minima lie. */
template <typename TGiga, typename TRef>
int
Compare(const char * label, TGiga * giga, TRef * ref, ImageType * fixed, ImageType * moving, MaskType * mask,
        double valueRelTol, double cosineMin, double fieldCosineMin, double sweepStep, int sweepHalf,
        bool checkMagnitude)
{
  auto euler = EulerType::New();
  euler->SetCenter(Center(fixed));
  EulerType::ParametersType p(6);
  p[0] = 0.04; p[1] = -0.03; p[2] = 0.05; p[3] = 3.0; p[4] = -2.0; p[5] = 2.5;
  euler->SetParameters(p);
  auto affine = AffineType::New();
  affine->SetCenter(Center(fixed));
  affine->SetMatrix(euler->GetMatrix());
  affine->SetTranslation(euler->GetTranslation());
  AffineType::OutputVectorType s;
  s[0] = 1.04; s[1] = 0.97; s[2] = 1.02;
  affine->Scale(s, true);
  affine->Shear(0, 1, 0.03, true);

  TransformBase * transforms[2] = { euler, affine };
  const char *    names[2] = { "euler", "affine" };
  for (int k = 0; k < 2; ++k)
  {
    Setup(giga, fixed, moving, mask, transforms[k]);
    Setup(ref, fixed, moving, mask, transforms[k]);
    const Eval   a = Evaluate(giga), b = Evaluate(ref);
    const double rel = std::abs(a.value - b.value) / std::abs(b.value);
    const double cosine = Cosine(a.deriv, b.deriv);
    const double ratio = a.deriv.two_norm() / b.deriv.two_norm();
    std::printf("%s %s: value gigareg %.6f itk %.6f (rel diff %.4f, tol %.3f); derivative cosine %.4f (min %.3f), "
                "|d| ratio %.3f; time gigareg %.3f s itk %.3f s; valid %lu / %lu\n",
                label, names[k], a.value, b.value, rel, valueRelTol, cosine, cosineMin, ratio, a.seconds, b.seconds,
                static_cast<unsigned long>(giga->GetNumberOfValidPoints()),
                static_cast<unsigned long>(ref->GetNumberOfValidPoints()));
    GR_CHECK(rel <= valueRelTol, "%s %s value", label, names[k]);
    // The chain rule is metric-independent, so it is checked where the value is
    // smooth: LNCC zero-pads the moving image. MI counts a point only while its
    // moving point is inside the grid, so its value jumps as points cross the
    // border of the thin PD slab; differences see the jumps, no gradient does.
    if (!checkMagnitude && FiniteDifferenceCheck(label, names[k], giga, transforms[k], 0.05) != EXIT_SUCCESS)
      return EXIT_FAILURE;
    GR_CHECK(cosine >= cosineMin, "%s %s derivative direction", label, names[k]);
    GR_CHECK(!checkMagnitude || (ratio > 0.8 && ratio < 1.25), "%s %s derivative magnitude", label, names[k]);
  }

  // Local support (what ITK's SyN / greedy methods optimise): a displacement
  // field on the virtual grid; per-voxel derivatives, compared by direction.
  {
    auto field = MakeField(fixed, [](const ImageType::PointType & p) {
      FieldType::PixelType d;
      d[0] = 2.0 + std::sin(p[1] / 15.0);
      d[1] = -1.5;
      d[2] = std::cos(p[0] / 20.0);
      return d;
    });
    auto ft = FieldTransformType::New();
    ft->SetDisplacementField(field);
    Setup(giga, fixed, moving, mask, ft.GetPointer());
    Setup(ref, fixed, moving, mask, ft.GetPointer());
    const Eval   a = Evaluate(giga), b = Evaluate(ref);
    const double cosine = Cosine(a.deriv, b.deriv);
    std::printf("%s displacement field: value gigareg %.6f itk %.6f; per-voxel derivative cosine %.4f (min %.2f), "
                "|d| ratio %.3f\n",
                label, a.value, b.value, cosine, fieldCosineMin, a.deriv.two_norm() / b.deriv.two_norm());
    GR_CHECK(cosine >= fieldCosineMin, "%s field derivative direction", label);
    const double ratio = a.deriv.two_norm() / b.deriv.two_norm();
    GR_CHECK(!checkMagnitude || (ratio > 0.8 && ratio < 1.25), "%s field derivative magnitude", label);

    // Per-voxel scale convention: perturb the field at the voxels of largest
    // derivative and compare with central differences of the GigaReg value
    // (LNCC: N x, as ANTS; Mattes: the derivative of the value itself).
    const double N = checkMagnitude ? 1.0 : static_cast<double>(giga->GetNumberOfValidPoints());
    std::vector<std::pair<double, size_t>> order;
    for (size_t i = 0; i < a.deriv.GetSize(); ++i)
      order.emplace_back(-std::abs(a.deriv[i]), i);
    std::partial_sort(order.begin(), order.begin() + 3, order.end());
    double worstRel = 0.0;
    for (int q = 0; q < 3; ++q)
    {
      const size_t i = order[q].second;
      auto *       buf = field->GetBufferPointer()[i / 3].GetDataPointer() + (i % 3);
      const double h = 1e-3, keep = *buf; // mm: small against trilinear cells and histogram bins
      *buf = keep + h;
      field->Modified();
      const double vp = giga->GetValue();
      *buf = keep - h;
      field->Modified();
      const double vm = giga->GetValue();
      *buf = keep;
      field->Modified();
      const double fd = -N * (vp - vm) / (2.0 * h);
      worstRel = std::max(worstRel, std::abs(a.deriv[i] - fd) / std::abs(fd));
    }
    std::printf("%s displacement field: per-voxel derivative vs central differences (3 largest): max rel. error %.1e "
                "(tol 0.01)\n",
                label, worstRel);
    GR_CHECK(worstRel <= 0.01, "%s per-voxel derivative scale", label);
  }

  // Sweep: translation along x around identity.
  auto t = EulerType::New();
  t->SetCenter(Center(fixed));
  Setup(giga, fixed, moving, mask, t);
  Setup(ref, fixed, moving, mask, t);
  int    bestA = 0, bestB = 0;
  double minA = 1e300, minB = 1e300;
  std::printf("%s sweep tx:", label);
  for (int i = -sweepHalf; i <= sweepHalf; ++i)
  {
    EulerType::ParametersType q(6);
    q.Fill(0.0);
    q[3] = i * sweepStep;
    t->SetParameters(q);
    const double va = giga->GetValue(), vb = ref->GetValue();
    std::printf(" [%+.1f: %.5f %.5f]", q[3], va, vb);
    if (i == 0)
    {
      std::printf(" (identity: rel diff %.5f, tol 0.005)", std::abs(va - vb) / std::abs(vb));
      GR_CHECK(std::abs(va - vb) <= 0.005 * std::abs(vb), "%s value at identity", label);
    }
    if (va < minA) { minA = va; bestA = i; }
    if (vb < minB) { minB = vb; bestB = i; }
  }
  std::printf("\n%s sweep minimum: gigareg tx = %+.1f mm, itk tx = %+.1f mm (tol %.1f mm)\n", label,
              bestA * sweepStep, bestB * sweepStep, sweepStep);
  GR_CHECK(std::abs(bestA - bestB) <= 1, "%s sweep minima differ", label);
  return EXIT_SUCCESS;
}
} // namespace

int
itkGigaRegLNCCMetricTest(int, char *[])
{
  // Monomodal (LNCC's use): T1 against itself at another resolution; the sweep
  // minimum is at 0. Two conventions are neutralised so that the values are
  // comparable: 1% noise removes the exactly flat background (ANTS scores a
  // flat window cc = 1, the core 0), and IntensityScale 1000 makes the core's
  // epsilon negligible. What remains is the border rule (the core zero-pads the
  // moving image, ANTS drops points whose moving point is outside).
  auto fixed = ReadShrunk("chris_t1.nii.gz", 4, 4, 4);
  auto moving = ReadShrunk("chris_t1.nii.gz", 3, 3, 3);
  AddNoise(fixed, 0.01, 1);
  AddNoise(moving, 0.01, 2);
  using Giga = itk::GigaRegLocalNormalizedCorrelationImageToImageMetricv4<ImageType, ImageType>;
  using Ref = itk::ANTSNeighborhoodCorrelationImageToImageMetricv4<ImageType, ImageType>;
  auto giga = Giga::New();
  giga->SetRadius(2);
  giga->SetIntensityScale(1000.0);
  auto ref = Ref::New();
  Ref::RadiusType r;
  r.Fill(2);
  ref->SetRadius(r);
  ref->SetUseMovingImageGradientFilter(false);
  ref->SetUseFixedImageGradientFilter(false);
  return Compare("LNCC", giga.GetPointer(), ref.GetPointer(), fixed, moving, nullptr, 0.06, 0.9, 0.75, 2.0, 3, false);
}

int
itkGigaRegMattesMetricTest(int, char *[])
{
  // Multimodal: T1 fixed, PD moving (same head, same session).
  auto fixed = ReadShrunk("chris_t1.nii.gz", 3, 3, 3);
  auto moving = ReadShrunk("chris_PD.nii.gz", 3, 3, 1);
  using Giga = itk::GigaRegMattesMutualInformationImageToImageMetricv4<ImageType, ImageType>;
  using Ref = itk::MattesMutualInformationImageToImageMetricv4<ImageType, ImageType>;
  auto giga = Giga::New();
  giga->SetNumberOfHistogramBins(32);
  auto ref = Ref::New();
  ref->SetNumberOfHistogramBins(32);
  ref->SetUseMovingImageGradientFilter(false);
  ref->SetUseFixedImageGradientFilter(false);
  ref->SetUseSampledPointSet(false);
  if (Compare("Mattes", giga.GetPointer(), ref.GetPointer(), fixed, moving, nullptr, 0.02, 0.95, 0.85, 2.0, 4, true) !=
      EXIT_SUCCESS)
    return EXIT_FAILURE;

  // Masks: head masks on both images (the histogram ranges follow them too).
  // Loose head masks: with tight ones the masked MI is small (~0.04) and its
  // gradient is dominated by the few voxels where the two inside-buffer rules differ.
  auto fmask = ThresholdMask(fixed, 0.02);
  auto mmask = ThresholdMask(moving, 0.02);
  auto euler = EulerType::New();
  euler->SetCenter(Center(fixed));
  EulerType::ParametersType p(6);
  p[0] = 0.02; p[1] = 0.03; p[2] = -0.04; p[3] = -2.0; p[4] = 1.0; p[5] = 3.0;
  euler->SetParameters(p);
  giga->SetMovingImageMask(mmask);
  ref->SetMovingImageMask(mmask);
  Setup(giga.GetPointer(), fixed, moving, fmask, euler);
  Setup(ref.GetPointer(), fixed, moving, fmask, euler);
  const Eval   a = Evaluate(giga.GetPointer()), b = Evaluate(ref.GetPointer());
  const double rel = std::abs(a.value - b.value) / std::abs(b.value);
  const double cosine = Cosine(a.deriv, b.deriv);
  std::printf("Mattes with fixed + moving masks: value gigareg %.6f itk %.6f (rel diff %.4f, tol 0.02), derivative "
              "cosine %.4f (min 0.95), valid %lu / %lu\n",
              a.value, b.value, rel, cosine, static_cast<unsigned long>(giga->GetNumberOfValidPoints()),
              static_cast<unsigned long>(ref->GetNumberOfValidPoints()));
  GR_CHECK(rel <= 0.02 && cosine >= 0.95, "masked Mattes differs");
  return EXIT_SUCCESS;
}
