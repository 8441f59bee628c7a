#ifndef itkGigaRegImageRegistrationMethod_hxx
#define itkGigaRegImageRegistrationMethod_hxx

#include <algorithm>
#include <cstring>

#include "itkAffineTransform.h"
#include "itkDisplacementFieldTransform.h"
#include "itkEuler3DTransform.h"
#include "itkGigaRegImageRegistrationMethod.h"
#include "itkTranslationTransform.h"

extern "C" {
#include "gigareg/comm.h"
#include "gigareg/grid_parallel.h"
#include "gigareg/param_map.h"
}

namespace itk
{

template <typename TF, typename TM>
GigaRegImageRegistrationMethod<TF, TM>::GigaRegImageRegistrationMethod()
{
  this->SetPrimaryInputName("FixedImage");
  this->AddRequiredInputName("MovingImage", 1);
  this->SetNumberOfRequiredOutputs(1);
  this->SetNthOutput(0, this->MakeOutput(0));
}

template <typename TF, typename TM>
GigaRegImageRegistrationMethod<TF, TM>::~GigaRegImageRegistrationMethod()
{
  this->ClearResults();
}

template <typename TF, typename TM>
void
GigaRegImageRegistrationMethod<TF, TM>::ClearResults()
{
  for (auto & r : m_Results)
  {
    gr_stage_result_clear(&r);
  }
  m_Results.clear();
  m_ForwardDisplacementField = nullptr;
}

template <typename TF, typename TM>
ProcessObject::DataObjectPointer
GigaRegImageRegistrationMethod<TF, TM>::MakeOutput(DataObjectPointerArraySizeType)
{
  auto decorated = DecoratedOutputTransformType::New();
  decorated->Set(OutputTransformType::New());
  return decorated.GetPointer();
}

template <typename TF, typename TM>
auto
GigaRegImageRegistrationMethod<TF, TM>::GetOutput() const -> const DecoratedOutputTransformType *
{
  return static_cast<const DecoratedOutputTransformType *>(this->ProcessObject::GetOutput(0));
}

template <typename TF, typename TM>
void
GigaRegImageRegistrationMethod<TF, TM>::AddStageFromParameterFile(const std::string & path)
{
  gr_param_map * map = nullptr;
  StageConfig    c;
  gr_status      s = gr_param_map_read(path.c_str(), &map);
  if (s == GR_OK)
  {
    gr_output_config oc;
    s = gr_stage_config_from_params(map, path.c_str(), &c, &oc, nullptr);
  }
  gr_param_map_destroy(map);
  itkGigaRegCheck(s, "parameter file");
  this->AddStage(c);
}

template <typename TF, typename TM>
void
GigaRegImageRegistrationMethod<TF, TM>::OnProgress(void * user, const gr_progress_info * info)
{
  auto * self = static_cast<Self *>(user);
  self->m_CurrentStage = info->stage;
  self->m_CurrentLevel = info->level;
  self->m_CurrentIteration = info->iteration;
  self->m_CurrentMetricValue = info->metric;
  self->m_NumberOfLevelsInCurrentStage = info->nlevels;
  // Each finer level costs ~8x the previous one (the core's own ETA weighting).
  double done = 0.0, total = 0.0, w = 1.0;
  for (int l = 0; l < info->nlevels; ++l, w *= 8.0)
  {
    total += w;
    if (l < info->level)
    {
      done += w;
    }
    else if (l == info->level && info->niterations > 0)
    {
      done += w * std::min(1.0, (info->iteration + 1.0) / info->niterations);
    }
  }
  const double stageFraction = total > 0.0 ? done / total : 1.0;
  self->UpdateProgress(static_cast<float>((info->stage + stageFraction) / std::max(1, info->nstages)));
  self->InvokeEvent(IterationEvent());
}

template <typename TF, typename TM>
void
GigaRegImageRegistrationMethod<TF, TM>::GenerateData()
{
  this->ClearResults();
  if (m_Stages.empty())
  {
    itkExceptionMacro(<< "no stages: call AddStage or AddStageFromParameterFile");
  }
  auto fixed = gigareg::ImageToGr(this->GetFixedImage());
  auto moving = gigareg::ImageToGr(this->GetMovingImage());
  auto fixedMask = gigareg::MaskImageToGr(this->GetFixedMask());
  auto movingMask = gigareg::MaskImageToGr(this->GetMovingMask());

  std::vector<StageConfig> stages = m_Stages;
  int                      shards = m_NumberOfShards;
  for (auto & c : stages)
  {
    gr_stage_config_resolve_grid_spacing(&c, &fixed->geom);
    shards = std::max(shards, c.shards);
  }
  gr_affine  initial;
  const bool haveInitial = m_InitialTransform.IsNotNull();
  if (haveInitial && !gigareg::LinearTransformToAffine(m_InitialTransform, initial))
  {
    itkExceptionMacro(<< "the initial transform must be linear (got " << m_InitialTransform->GetNameOfClass() << ")");
  }

  auto           backend = gigareg::MakeBackend(m_Device, m_NumberOfThreads);
  gr_reg_options opt;
  std::memset(&opt, 0, sizeof opt);
  opt.progress = &Self::OnProgress;
  opt.progress_user = this;
  opt.seed = m_Seed;
  const int n = static_cast<int>(stages.size());
  m_Results.assign(stages.size(), gr_stage_result());
  for (auto & r : m_Results)
  {
    std::memset(&r, 0, sizeof r);
  }
  this->UpdateProgress(0.0f);
  gr_status s;
  if (shards > 1)
  {
    s = gr_register_local_shards(backend.get(), shards, fixed.get(), moving.get(), fixedMask.get(), movingMask.get(),
                                 haveInitial ? &initial : nullptr, stages.data(), n, &opt, m_Results.data());
  }
  else
  {
    gr_comm * comm = nullptr;
    s = gr_comm_local_create(&comm);
    if (s == GR_OK)
    {
      s = gr_register(backend.get(), comm, fixed.get(), moving.get(), fixedMask.get(), movingMask.get(),
                      haveInitial ? &initial : nullptr, stages.data(), n, &opt, m_Results.data());
    }
    if (comm)
    {
      gr_comm_destroy(comm);
    }
  }
  if (s != GR_OK)
  {
    m_Results.clear(); // gr_register cleared them
  }
  itkGigaRegCheck(s, "registration");

  // Composite order: ITK applies the last added transform first. The core's
  // chain is y = T_n-1(...T_0(T_init(x + u(x)))): add T_n-1 first, u last.
  auto composite = OutputTransformType::New();
  int  deformable = -1;
  for (int k = n - 1; k >= 0; --k)
  {
    const gr_stage_result & r = m_Results[k];
    typename OutputTransformType::TransformType::Pointer t;
    typename OutputTransformType::InputPointType         center;
    for (unsigned int a = 0; a < 3; ++a)
    {
      center[a] = r.center[a];
    }
    switch (r.kind)
    {
      case GR_STAGE_TRANSLATION:
      {
        auto tt = TranslationTransform<double, 3>::New();
        typename TranslationTransform<double, 3>::ParametersType p(3);
        for (unsigned int i = 0; i < 3; ++i)
          p[i] = r.params[i];
        tt->SetParameters(p);
        t = tt;
        break;
      }
      case GR_STAGE_RIGID:
      {
        auto et = Euler3DTransform<double>::New();
        et->SetComputeZYX(false);
        et->SetCenter(center);
        typename Euler3DTransform<double>::ParametersType p(6);
        for (unsigned int i = 0; i < 6; ++i)
          p[i] = r.params[i];
        et->SetParameters(p);
        t = et;
        break;
      }
      case GR_STAGE_AFFINE:
      {
        auto at = AffineTransform<double, 3>::New();
        at->SetCenter(center);
        typename AffineTransform<double, 3>::ParametersType p(12);
        for (unsigned int i = 0; i < 12; ++i)
          p[i] = r.params[i];
        at->SetParameters(p);
        t = at;
        break;
      }
      case GR_STAGE_GREEDY:
      case GR_STAGE_SYN:
        if (deformable < 0 && r.field)
        {
          deformable = k; // the last deformable stage's u holds the whole deformation
        }
        break;
    }
    if (t)
    {
      composite->AddTransform(t);
    }
  }
  if (haveInitial)
  {
    auto it = AffineTransform<double, 3>::New();
    typename AffineTransform<double, 3>::MatrixType       m;
    typename AffineTransform<double, 3>::OutputVectorType o;
    for (unsigned int r = 0; r < 3; ++r)
    {
      for (unsigned int c = 0; c < 3; ++c)
        m(r, c) = initial.m[r * 4 + c];
      o[r] = initial.m[r * 4 + 3];
    }
    it->SetMatrix(m);
    it->SetOffset(o);
    composite->AddTransform(it);
  }
  if (deformable >= 0)
  {
    const gr_stage_result & r = m_Results[deformable];
    auto                    dt = DisplacementFieldTransform<double, 3>::New();
    dt->SetDisplacementField(gigareg::GrToDisplacementField(r.field));
    if (r.inverse_field)
    {
      dt->SetInverseDisplacementField(gigareg::GrToDisplacementField(r.inverse_field));
    }
    composite->AddTransform(dt);

    gr_affine chain;
    itkGigaRegCheck(gr_chain_affine(haveInitial ? &initial : nullptr, m_Results.data(), n, n, &chain), "chain");
    gr_image * fwd = nullptr;
    itkGigaRegCheck(gr_export_fields(backend.get(), &chain, r.field, nullptr, &fixed->geom, &moving->geom, &fwd,
                                     nullptr),
                    "field export");
    gigareg::GrImagePointer fwdPtr(fwd);
    m_ForwardDisplacementField = gigareg::GrToDisplacementField(fwd);
  }
  if (composite->GetNumberOfTransforms() == 0)
  {
    composite->AddTransform(AffineTransform<double, 3>::New()); // identity: no stage moved anything
  }
  auto * out = static_cast<DecoratedOutputTransformType *>(this->ProcessObject::GetOutput(0));
  out->Set(composite);
  this->UpdateProgress(1.0f);
}

template <typename TF, typename TM>
void
GigaRegImageRegistrationMethod<TF, TM>::PrintSelf(std::ostream & os, Indent indent) const
{
  Superclass::PrintSelf(os, indent);
  os << indent << "Stages: " << m_Stages.size() << std::endl;
  os << indent << "Device: " << m_Device << std::endl;
  os << indent << "NumberOfShards: " << m_NumberOfShards << std::endl;
  os << indent << "NumberOfThreads: " << m_NumberOfThreads << std::endl;
  os << indent << "Seed: " << m_Seed << std::endl;
}

} // namespace itk

#endif
