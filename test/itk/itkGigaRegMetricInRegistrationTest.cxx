/* The GigaReg metrics inside ITK's own ImageRegistrationMethodv4 (regular-step
 * gradient descent, physical-shift scales, two-level pyramid) recover a known
 * rigid misalignment (Euler3DTransform) and a known affine one (rotation,
 * anisotropic scaling and shear; AffineTransform) applied to chris_t1. */
#include "itkGigaRegTestCommon.h"

#include "itkCenteredTransformInitializer.h"
#include "itkAffineTransform.h"
#include "itkEuler3DTransform.h"
#include "itkGigaRegLocalNormalizedCorrelationImageToImageMetricv4.h"
#include "itkGigaRegMattesMutualInformationImageToImageMetricv4.h"
#include "itkImageRegistrationMethodv4.h"
#include "itkLinearInterpolateImageFunction.h"
#include "itkRegistrationParameterScalesFromPhysicalShift.h"
#include "itkRegularStepGradientDescentOptimizerv4.h"
#include "itkResampleImageFilter.h"
#include "itkTimeProbe.h"

namespace
{
using namespace grtest;
using EulerType = itk::Euler3DTransform<double>;
using AffineType = itk::AffineTransform<double, 3>;

template <typename TTransform, typename TMetric>
int
Recover(const char * label, TMetric * metric, ImageType * fixed, ImageType * moving, const TTransform * truth,
        double tolMm)
{
  using RegistrationType = itk::ImageRegistrationMethodv4<ImageType, ImageType, TTransform>;
  auto initial = TTransform::New();
  auto init = itk::CenteredTransformInitializer<TTransform, ImageType, ImageType>::New();
  init->SetTransform(initial);
  init->SetFixedImage(fixed);
  init->SetMovingImage(moving);
  init->GeometryOn();
  init->InitializeTransform();
  initial->SetTranslation(typename TTransform::OutputVectorType(0.0)); // same centre, no offset guess

  auto optimizer = itk::RegularStepGradientDescentOptimizerv4<double>::New();
  optimizer->SetLearningRate(2.0);
  optimizer->SetMinimumStepLength(0.01);
  optimizer->SetRelaxationFactor(0.6);
  optimizer->SetNumberOfIterations(150);
  auto scales = itk::RegistrationParameterScalesFromPhysicalShift<TMetric>::New();
  scales->SetMetric(metric);
  optimizer->SetScalesEstimator(scales);
  optimizer->SetDoEstimateLearningRateOnce(true);

  auto reg = RegistrationType::New();
  reg->SetFixedImage(fixed);
  reg->SetMovingImage(moving);
  reg->SetMetric(metric);
  reg->SetOptimizer(optimizer);
  reg->SetInitialTransform(initial);
  reg->InPlaceOn();
  typename RegistrationType::ShrinkFactorsArrayType shrink(2);
  shrink[0] = 2;
  shrink[1] = 1;
  typename RegistrationType::SmoothingSigmasArrayType sigmas(2);
  sigmas[0] = 1;
  sigmas[1] = 0;
  reg->SetNumberOfLevels(2);
  reg->SetShrinkFactorsPerLevel(shrink);
  reg->SetSmoothingSigmasPerLevel(sigmas);
  reg->SetMetricSamplingStrategy(RegistrationType::MetricSamplingStrategyEnum::NONE);
  itk::TimeProbe clock;
  clock.Start();
  reg->Update();
  clock.Stop();

  // Registration maps fixed -> moving points; the moving image is the fixed one
  // seen through `truth`, so the answer is truth^-1. Compare over the head.
  auto inverse = TTransform::New();
  truth->GetInverse(inverse);
  const TTransform * found = reg->GetTransform();
  double            worst = 0.0, mean = 0.0;
  size_t            count = 0;
  itk::ImageRegionConstIteratorWithIndex<ImageType> it(fixed, fixed->GetBufferedRegion());
  float                                             mx = 0.0f;
  for (it.GoToBegin(); !it.IsAtEnd(); ++it)
    mx = std::max(mx, it.Get());
  for (it.GoToBegin(); !it.IsAtEnd(); ++it)
  {
    if (it.Get() < 0.1f * mx)
      continue;
    ImageType::PointType p;
    fixed->TransformIndexToPhysicalPoint(it.GetIndex(), p);
    const double e = found->TransformPoint(p).EuclideanDistanceTo(inverse->TransformPoint(p));
    worst = std::max(worst, e);
    mean += e;
    ++count;
  }
  mean /= static_cast<double>(count);
  std::printf("%s in ImageRegistrationMethodv4: %.2f s, %lu iterations (last level), final metric %.5f; "
              "error over the head: mean %.3f mm, max %.3f mm (tol max %.2f mm; voxel %.2f mm)\n",
              label, clock.GetTotal(), static_cast<unsigned long>(optimizer->GetCurrentIteration()),
              optimizer->GetValue(), mean, worst, tolMm, fixed->GetSpacing()[0]);
  GR_CHECK(worst <= tolMm, "%s: misalignment not recovered", label);
  return EXIT_SUCCESS;
}
} // namespace

int
itkGigaRegMetricInRegistrationTest(int, char *[])
{
  auto fixed = ReadShrunk("chris_t1.nii.gz", 3, 3, 3);
  // Known rigid misalignment (about the image centre): ~4 degrees and ~5 mm.
  auto truth = EulerType::New();
  {
    const auto &                    r = fixed->GetBufferedRegion();
    itk::ContinuousIndex<double, 3> ci;
    for (unsigned a = 0; a < 3; ++a)
      ci[a] = 0.5 * (r.GetSize(a) - 1);
    EulerType::InputPointType c;
    fixed->TransformContinuousIndexToPhysicalPoint(ci, c);
    truth->SetCenter(c);
    EulerType::ParametersType p(6);
    p[0] = 0.05; p[1] = -0.04; p[2] = 0.07; p[3] = 4.0; p[4] = -3.0; p[5] = 2.5;
    truth->SetParameters(p);
  }
  auto resample = itk::ResampleImageFilter<ImageType, ImageType>::New();
  resample->SetInput(fixed);
  resample->SetTransform(truth);
  resample->SetOutputParametersFromImage(fixed);
  resample->Update();
  ImageType::Pointer moving = resample->GetOutput();

  auto mi = itk::GigaRegMattesMutualInformationImageToImageMetricv4<ImageType, ImageType>::New();
  mi->SetNumberOfHistogramBins(32);
  if (Recover<EulerType>("GigaReg Mattes MI (rigid)", mi.GetPointer(), fixed, moving, truth, 0.5) != EXIT_SUCCESS)
    return EXIT_FAILURE;
  auto cc = itk::GigaRegLocalNormalizedCorrelationImageToImageMetricv4<ImageType, ImageType>::New();
  cc->SetRadius(2);
  if (Recover<EulerType>("GigaReg LNCC (rigid)", cc.GetPointer(), fixed, moving, truth, 0.5) != EXIT_SUCCESS)
    return EXIT_FAILURE;

  // Known affine misalignment: the rotation above, scaling 1.06 / 0.95 / 1.03 and a 0.04 shear.
  auto affine = AffineType::New();
  affine->SetCenter(truth->GetCenter());
  AffineType::MatrixType m = truth->GetMatrix();
  AffineType::MatrixType sk;
  sk.SetIdentity();
  sk(0, 0) = 1.06;
  sk(1, 1) = 0.95;
  sk(2, 2) = 1.03;
  sk(0, 1) = 0.04;
  affine->SetMatrix(m * sk);
  affine->SetTranslation(truth->GetTranslation());
  auto warpA = itk::ResampleImageFilter<ImageType, ImageType>::New();
  warpA->SetInput(fixed);
  warpA->SetTransform(affine);
  warpA->SetOutputParametersFromImage(fixed);
  warpA->Update();
  ImageType::Pointer movingA = warpA->GetOutput();
  auto mi2 = itk::GigaRegMattesMutualInformationImageToImageMetricv4<ImageType, ImageType>::New();
  mi2->SetNumberOfHistogramBins(32);
  return Recover<AffineType>("GigaReg Mattes MI (affine)", mi2.GetPointer(), fixed, movingA, affine.GetPointer(), 0.75);
}

/* The GigaReg LNCC (local-support derivative) driving ITK's own
 * SyNImageRegistrationMethod: recovers a smooth synthetic deformation of chris_t1. */
#include "itkANTSNeighborhoodCorrelationImageToImageMetricv4.h"
#include "itkDisplacementFieldTransform.h"
#include "itkDisplacementFieldTransformParametersAdaptor.h"
#include "itkSyNImageRegistrationMethod.h"

int
itkGigaRegSyNTest(int argc, char * argv[])
{
  using namespace grtest;
  auto fixed = ReadShrunk("chris_t1.nii.gz", 4, 4, 4);
  auto field = MakeField(fixed, [](const ImageType::PointType & p) {
    FieldType::PixelType d;
    d[0] = 3.0 * std::sin(p[1] / 25.0);
    d[1] = 2.5 * std::cos(p[2] / 30.0);
    d[2] = 2.0 * std::sin(p[0] / 28.0);
    return d;
  });
  auto truth = FieldTransformType::New();
  truth->SetDisplacementField(field);
  auto warp = itk::ResampleImageFilter<ImageType, ImageType>::New();
  warp->SetInput(fixed);
  warp->SetTransform(truth);
  warp->SetOutputParametersFromImage(fixed);
  warp->Update();
  ImageType::Pointer moving = warp->GetOutput(); // moving(x) = fixed(x + d(x))

  using SyNType = itk::SyNImageRegistrationMethod<ImageType, ImageType>;
  auto metric = itk::GigaRegLocalNormalizedCorrelationImageToImageMetricv4<ImageType, ImageType>::New();
  metric->SetRadius(2);
  auto syn = SyNType::New();
  syn->SetFixedImage(fixed);
  syn->SetMovingImage(moving);
  auto ants = itk::ANTSNeighborhoodCorrelationImageToImageMetricv4<ImageType, ImageType>::New();
  if (argc > 1 && std::string(argv[1]) == "ants")
    syn->SetMetric(ants);
  else
    syn->SetMetric(metric);
  syn->SetNumberOfLevels(2);
  SyNType::ShrinkFactorsArrayType shrink(2);
  shrink[0] = 2;
  shrink[1] = 1;
  SyNType::SmoothingSigmasArrayType sigmas(2);
  sigmas[0] = 1;
  sigmas[1] = 0;
  syn->SetShrinkFactorsPerLevel(shrink);
  syn->SetSmoothingSigmasPerLevel(sigmas);
  SyNType::NumberOfIterationsArrayType iterations(2);
  iterations[0] = 40;
  iterations[1] = 20;
  syn->SetNumberOfIterationsPerLevel(iterations);
  // Per-level field grids and a zero initial field on the fixed grid, as ITK's own SyN tests set them up.
  SyNType::TransformParametersAdaptorsContainerType adaptors;
  for (unsigned int level = 0; level < 2; ++level)
  {
    auto s = itk::ShrinkImageFilter<ImageType, ImageType>::New();
    s->SetShrinkFactors(shrink[level]);
    s->SetInput(fixed);
    s->UpdateOutputInformation();
    const ImageType * g = s->GetOutput();
    auto a = itk::DisplacementFieldTransformParametersAdaptor<FieldTransformType>::New();
    a->SetRequiredSpacing(g->GetSpacing());
    a->SetRequiredSize(g->GetLargestPossibleRegion().GetSize());
    a->SetRequiredDirection(g->GetDirection());
    a->SetRequiredOrigin(g->GetOrigin());
    adaptors.push_back(a);
  }
  syn->SetTransformParametersAdaptorsPerLevel(adaptors);
  auto zero = [&]() {
    auto z = FieldType::New();
    z->CopyInformation(fixed);
    z->SetRegions(fixed->GetBufferedRegion());
    z->Allocate();
    z->FillBuffer(FieldType::PixelType(0.0));
    return z;
  };
  auto initialField = FieldTransformType::New();
  initialField->SetDisplacementField(zero());
  initialField->SetInverseDisplacementField(zero());
  syn->SetInitialTransform(initialField);
  syn->InPlaceOn();
  syn->SetLearningRate(0.25);
  syn->SetGaussianSmoothingVarianceForTheUpdateField(3.0);
  syn->SetGaussianSmoothingVarianceForTheTotalField(0.5);
  itk::TimeProbe clock;
  clock.Start();
  syn->Update();
  clock.Stop();

  // The registration maps fixed -> moving points: T(x) + d(T(x)) = x when exact.
  const auto * found = syn->GetTransform();
  double       before = 0.0, after = 0.0;
  size_t       count = 0;
  float        mx = 0.0f;
  itk::ImageRegionConstIteratorWithIndex<ImageType> ii(fixed, fixed->GetBufferedRegion());
  for (ii.GoToBegin(); !ii.IsAtEnd(); ++ii)
    mx = std::max(mx, ii.Get());
  for (ii.GoToBegin(); !ii.IsAtEnd(); ++ii)
  {
    if (ii.Get() < 0.1f * mx)
      continue;
    ImageType::PointType x;
    fixed->TransformIndexToPhysicalPoint(ii.GetIndex(), x);
    before += truth->TransformPoint(x).EuclideanDistanceTo(x);
    after += truth->TransformPoint(found->TransformPoint(x)).EuclideanDistanceTo(x);
    ++count;
  }
  before /= static_cast<double>(count);
  after /= static_cast<double>(count);
  std::printf("GigaReg LNCC in SyNImageRegistrationMethod: %.2f s; mean error over the head %.3f mm -> %.3f mm "
              "(tol: below 70%% of the start; voxel %.2f mm)\n",
              clock.GetTotal(), before, after, fixed->GetSpacing()[0]);
  GR_CHECK(after < 0.7 * before, "SyN with the GigaReg metric did not recover the deformation");
  return EXIT_SUCCESS;
}
