/* GigaRegImageRegistrationMethod on the multimodal chris_t1 / chris_PD pair
 * (rigid MI -> greedy MI, short pyramid): same result as gr_register called
 * directly with the same stage configs, iteration/progress events, and the
 * output transform written (.tfm + field image), read back and applied by
 * ITK's ResampleImageFilter. */
#include "itkGigaRegTestCommon.h"

#include "itkCommand.h"
#include "itkCompositeTransform.h"
#include "itkDisplacementFieldTransform.h"
#include "itkGigaRegImageRegistrationMethod.h"
#include "itkImageFileWriter.h"
#include "itkLinearInterpolateImageFunction.h"
#include "itkResampleImageFilter.h"
#include "itkTimeProbe.h"
#include "itkTransformFileReader.h"
#include "itkTransformFileWriter.h"

extern "C" {
#include "gigareg/comm.h"
}

namespace
{
using namespace grtest;
using MethodType = itk::GigaRegImageRegistrationMethod<ImageType, ImageType>;
using CompositeType = itk::CompositeTransform<double, 3>;
using FieldType = itk::Image<itk::Vector<double, 3>, 3>;

struct Events
{
  int    iterations = 0, progress = 0, maxStage = -1, badOrder = 0;
  int    lastStage = 0, lastLevel = 0;
  double lastProgress = 0.0, lastMetric = 0.0;
};

ImageType::Pointer
Resample(const ImageType * moving, const ImageType * fixed, const itk::Transform<double, 3, 3> * t)
{
  auto f = itk::ResampleImageFilter<ImageType, ImageType>::New();
  f->SetInput(moving);
  f->SetTransform(t);
  f->SetInterpolator(itk::LinearInterpolateImageFunction<ImageType, double>::New());
  f->SetOutputParametersFromImage(fixed);
  f->Update();
  ImageType::Pointer out = f->GetOutput();
  out->DisconnectPipeline();
  return out;
}

double
MaxDiff(const ImageType * a, const ImageType * b)
{
  double       d = 0.0;
  const size_t n = a->GetBufferedRegion().GetNumberOfPixels();
  for (size_t i = 0; i < n; ++i)
    d = std::max(d, static_cast<double>(std::abs(a->GetBufferPointer()[i] - b->GetBufferPointer()[i])));
  return d;
}
} // namespace

int
itkGigaRegRegistrationMethodTest(int, char *[])
{
  auto fixed = ReadShrunk("chris_t1.nii.gz", 2, 2, 2);
  auto moving = ReadShrunk("chris_PD.nii.gz", 1, 1, 1);

  // Short configuration: two levels per stage, few iterations (CI on two cores).
  auto rigid = MethodType::DefaultStage(GR_STAGE_RIGID);
  rigid.metric.kind = GR_METRIC_MI;
  rigid.levels = 2;
  rigid.shrink[0] = 4; rigid.shrink[1] = 2;
  rigid.sigma_vox[0] = 2; rigid.sigma_vox[1] = 1;
  rigid.iterations[0] = 40; rigid.iterations[1] = 20;
  auto greedy = MethodType::DefaultStage(GR_STAGE_GREEDY);
  greedy.metric.kind = GR_METRIC_MI;
  greedy.levels = 2;
  greedy.shrink[0] = 4; greedy.shrink[1] = 2;
  greedy.sigma_vox[0] = 1.5; greedy.sigma_vox[1] = 0.5;
  greedy.iterations[0] = 15; greedy.iterations[1] = 8;

  auto method = MethodType::New();
  method->SetFixedImage(fixed);
  method->SetMovingImage(moving);
  method->AddStage(rigid);
  method->AddStage(greedy);
  method->SetDevice("cpu");
  Events ev;
  auto   iterCmd = itk::CStyleCommand::New();
  iterCmd->SetClientData(&ev);
  iterCmd->SetCallback([](itk::Object * caller, const itk::EventObject &, void * data) {
    auto *       e = static_cast<Events *>(data);
    const auto * m = static_cast<const MethodType *>(caller);
    if (m->GetCurrentStage() < e->lastStage ||
        (m->GetCurrentStage() == e->lastStage && m->GetCurrentLevel() < e->lastLevel))
      ++e->badOrder;
    e->lastStage = m->GetCurrentStage();
    e->lastLevel = m->GetCurrentLevel();
    e->lastMetric = m->GetCurrentMetricValue();
    e->maxStage = std::max(e->maxStage, m->GetCurrentStage());
    ++e->iterations;
  });
  method->AddObserver(itk::IterationEvent(), iterCmd);
  auto progCmd = itk::CStyleCommand::New();
  progCmd->SetClientData(&ev);
  progCmd->SetCallback([](itk::Object * caller, const itk::EventObject &, void * data) {
    auto * e = static_cast<Events *>(data);
    ++e->progress;
    e->lastProgress = static_cast<const itk::ProcessObject *>(caller)->GetProgress();
  });
  method->AddObserver(itk::ProgressEvent(), progCmd);
  itk::TimeProbe clock;
  clock.Start();
  method->Update();
  clock.Stop();
  std::printf("method: %.2f s, %d iteration events (last: stage %d level %d metric %.5f), %d progress events "
              "(last %.3f)\n",
              clock.GetTotal(), ev.iterations, ev.lastStage, ev.lastLevel, ev.lastMetric, ev.progress,
              ev.lastProgress);
  GR_CHECK(ev.iterations > 10 && ev.maxStage == 1 && ev.badOrder == 0, "iteration events");
  GR_CHECK(ev.progress > 10 && ev.lastProgress == 1.0, "progress events");

  // The same stages through gr_register directly.
  auto          f = itk::gigareg::ImageToGr(fixed.GetPointer());
  auto          m = itk::gigareg::ImageToGr(moving.GetPointer());
  auto          be = itk::gigareg::MakeBackend("cpu");
  gr_comm *     comm = nullptr;
  gr_stage_config stages[2] = { rigid, greedy };
  gr_stage_result direct[2];
  std::memset(direct, 0, sizeof direct);
  GR_CHECK(gr_comm_local_create(&comm) == GR_OK, "comm");
  const gr_status s = gr_register(be.get(), comm, f.get(), m.get(), nullptr, nullptr, nullptr, stages, 2, nullptr,
                                  direct);
  gr_comm_destroy(comm);
  GR_CHECK(s == GR_OK, "gr_register: %s", gr_last_error());
  const auto & res = method->GetStageResults();
  double       dp = 0.0, du = 0.0;
  for (int i = 0; i < 6; ++i)
    dp = std::max(dp, std::abs(res[0].params[i] - direct[0].params[i]));
  const int64_t nf = gr_image_nvox(direct[1].field) * 3;
  for (int64_t i = 0; i < nf; ++i)
    du = std::max(du, static_cast<double>(std::abs(res[1].field->data[i] - direct[1].field->data[i])));
  std::printf("vs gr_register: rigid params max |diff| %.3g (tol 1e-9), field max |diff| %.3g mm (tol 1e-6); "
              "rigid p = [%.5f %.5f %.5f %.3f %.3f %.3f]\n",
              dp, du, res[0].params[0], res[0].params[1], res[0].params[2], res[0].params[3], res[0].params[4],
              res[0].params[5]);
  gr_stage_result_clear(&direct[0]);
  gr_stage_result_clear(&direct[1]);
  GR_CHECK(dp <= 1e-9 && du <= 1e-6, "ITK method differs from gr_register");

  // Grid Parallel through the ITK class: two shards (threads) give the single-shard result.
  {
    auto sharded = MethodType::New();
    sharded->SetFixedImage(fixed);
    sharded->SetMovingImage(moving);
    sharded->AddStage(rigid);
    sharded->AddStage(greedy);
    sharded->SetNumberOfShards(2);
    sharded->SetDevice("cpu");
    sharded->Update();
    const auto & r2 = sharded->GetStageResults();
    double       sp = 0.0, su = 0.0;
    for (int i = 0; i < 6; ++i)
      sp = std::max(sp, std::abs(res[0].params[i] - r2[0].params[i]));
    for (int64_t i = 0; i < nf; ++i)
      su = std::max(su, static_cast<double>(std::abs(res[1].field->data[i] - r2[1].field->data[i])));
    std::printf("2 shards vs 1: rigid params max |diff| %.3g, field max |diff| %.3g mm (tol 1e-9, 1e-6)\n", sp, su);
    GR_CHECK(sp <= 1e-9 && su <= 1e-6, "sharded run differs");
  }

  // Write: linear part as .tfm, the displacement as an image; read back; apply with ITK.
  const CompositeType * out = method->GetTransform();
  GR_CHECK(out->GetNumberOfTransforms() == 2, "composite has %u transforms", (unsigned)out->GetNumberOfTransforms());
  auto linear = CompositeType::New();
  for (unsigned int k = 0; k + 1 < out->GetNumberOfTransforms(); ++k)
    linear->AddTransform(const_cast<itk::Transform<double, 3, 3> *>(out->GetNthTransformConstPointer(k)));
  const auto * disp = dynamic_cast<const itk::DisplacementFieldTransform<double, 3> *>(out->GetBackTransform());
  GR_CHECK(disp != nullptr, "back transform is %s", out->GetBackTransform()->GetNameOfClass());
  auto tw = itk::TransformFileWriterTemplate<double>::New();
  tw->SetFileName(TmpPath("method_linear.tfm"));
  tw->SetInput(linear);
  tw->Update();
  auto fw = itk::ImageFileWriter<FieldType>::New();
  fw->SetFileName(TmpPath("method_field.mha"));
  fw->SetInput(disp->GetDisplacementField());
  fw->Update();

  auto tr = itk::TransformFileReaderTemplate<double>::New();
  tr->SetFileName(TmpPath("method_linear.tfm"));
  tr->Update();
  auto * readLinear = dynamic_cast<CompositeType *>(tr->GetTransformList()->front().GetPointer());
  GR_CHECK(readLinear != nullptr, "read transform is not a composite");
  auto fr = itk::ImageFileReader<FieldType>::New();
  fr->SetFileName(TmpPath("method_field.mha"));
  fr->Update();
  auto readDisp = itk::DisplacementFieldTransform<double, 3>::New();
  readDisp->SetDisplacementField(fr->GetOutput());
  auto rebuilt = CompositeType::New();
  for (unsigned int k = 0; k < readLinear->GetNumberOfTransforms(); ++k)
    rebuilt->AddTransform(readLinear->GetNthTransform(k));
  rebuilt->AddTransform(readDisp);

  auto a = Resample(moving, fixed, out);
  auto b = Resample(moving, fixed, rebuilt);
  auto fwd = itk::DisplacementFieldTransform<double, 3>::New();
  fwd->SetDisplacementField(method->GetForwardDisplacementField());
  auto         c = Resample(moving, fixed, fwd);
  const double dab = MaxDiff(a, b), dac = MaxDiff(a, c);
  std::printf("round trip: max |in-memory - read back| = %.3g (tol 1e-3); in-memory vs self-contained forward field "
              "= %.3g (tol 0.5%% of the image maximum)\n",
              dab, dac);
  GR_CHECK(dab <= 1e-3, "read-back transform resamples differently");
  float mx = 0.0f;
  for (size_t i = 0; i < a->GetBufferedRegion().GetNumberOfPixels(); ++i)
    mx = std::max(mx, a->GetBufferPointer()[i]);
  GR_CHECK(dac <= 0.005 * mx, "forward field differs from the composite (%.3g of max %.1f)", dac, mx);
  return EXIT_SUCCESS;
}
