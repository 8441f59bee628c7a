/*=========================================================================
 * GigaReg ITK layer: the whole staged registration (gr_register) as one ITK
 * ProcessObject whose output is an itk::CompositeTransform.
 *=========================================================================*/
#ifndef itkGigaRegImageRegistrationMethod_h
#define itkGigaRegImageRegistrationMethod_h

#include <string>
#include <vector>

#include "itkCompositeTransform.h"
#include "itkDataObjectDecorator.h"
#include "itkGigaRegCore.h"
#include "itkProcessObject.h"

namespace itk
{
/** \class GigaRegImageRegistrationMethod
 * \brief Rigid / affine / greedy / SyN stages over a pyramid, on the GigaReg core.
 *
 * Inputs: "Fixed" and "Moving" scalar 3D images, optional "FixedMask" and
 * "MovingMask" (any scalar image, > 0 = inside, on its image's grid).
 * Stages are gr_stage_config structs (DefaultStage gives the core's defaults;
 * AddStageFromParameterFile reads an elastix parameter file exactly as the
 * gigareg CLI does). Intensities are normalised inside gr_register.
 *
 * Output: a CompositeTransform<double, 3> mapping fixed physical points to
 * moving points (ITK's convention, LPS): the linear stages as
 * Euler3DTransform / AffineTransform / TranslationTransform (with the stage
 * centre, elastix's parameter order = ITK's), and for a deformable run a
 * DisplacementFieldTransform applied first, so y = A (x + u(x)) + t exactly as
 * the core composes it. GetForwardDisplacementField() is the same transform as
 * one self-contained field on the fixed grid (gr_export_fields; what elastix's
 * deformationField and ITK's DisplacementFieldTransform read).
 *
 * Events: ProgressEvent (fraction of iterations, coarse levels weighted) and
 * IterationEvent after every optimiser iteration; observers read
 * GetCurrentStage / Level / Iteration / MetricValue. With several shards the
 * events come from shard 0, which may be a thread other than the caller's.
 * \ingroup GigaReg
 */
template <typename TFixedImage, typename TMovingImage = TFixedImage>
class ITK_TEMPLATE_EXPORT GigaRegImageRegistrationMethod : public ProcessObject
{
public:
  ITK_DISALLOW_COPY_AND_MOVE(GigaRegImageRegistrationMethod);
  using Self = GigaRegImageRegistrationMethod;
  using Superclass = ProcessObject;
  using Pointer = SmartPointer<Self>;
  using ConstPointer = SmartPointer<const Self>;
  itkNewMacro(Self);
  itkTypeMacro(GigaRegImageRegistrationMethod, ProcessObject);

  static_assert(TFixedImage::ImageDimension == 3 && TMovingImage::ImageDimension == 3, "GigaReg registers 3D images");
  using FixedImageType = TFixedImage;
  using MovingImageType = TMovingImage;
  using MaskImageType = ImageBase<3>;
  using OutputTransformType = CompositeTransform<double, 3>;
  using DecoratedOutputTransformType = DataObjectDecorator<OutputTransformType>;
  using DisplacementFieldType = gigareg::DisplacementFieldType;
  using LinearTransformType = Transform<double, 3, 3>;
  using StageConfig = gr_stage_config;

  itkSetInputMacro(FixedImage, FixedImageType);
  itkGetInputMacro(FixedImage, FixedImageType);
  itkSetInputMacro(MovingImage, MovingImageType);
  itkGetInputMacro(MovingImage, MovingImageType);
  /** Masks: any scalar image type; > 0 is inside. */
  itkSetInputMacro(FixedMask, MaskImageType);
  itkGetInputMacro(FixedMask, MaskImageType);
  itkSetInputMacro(MovingMask, MaskImageType);
  itkGetInputMacro(MovingMask, MaskImageType);

  /** Optional linear transform applied before the stages (the CLI's -t0). */
  itkSetConstObjectMacro(InitialTransform, LinearTransformType);
  itkGetConstObjectMacro(InitialTransform, LinearTransformType);

  static StageConfig
  DefaultStage(gr_stage_kind kind)
  {
    StageConfig c;
    gr_stage_config_defaults(kind, &c);
    return c;
  }
  void
  AddStage(const StageConfig & c)
  {
    m_Stages.push_back(c);
    this->Modified();
  }
  /** One elastix parameter file = one stage, as the gigareg CLI reads it. */
  void
  AddStageFromParameterFile(const std::string & path);
  void
  ClearStages()
  {
    m_Stages.clear();
    this->Modified();
  }
  const std::vector<StageConfig> &
  GetStages() const
  {
    return m_Stages;
  }
  StageConfig &
  GetStage(unsigned int k)
  {
    this->Modified();
    return m_Stages.at(k);
  }

  /** Backend: "cpu", "cuda", "cuda:N" or "auto" (the default, as the CLI). */
  itkSetStringMacro(Device);
  itkGetStringMacro(Device);
  /** Grid Parallel shards as threads of this process (1 = none); stage configs
   * may ask for more (GigaRegNumberOfShards), the largest wins, as in the CLI. */
  itkSetClampMacro(NumberOfShards, int, 1, 4096);
  itkGetConstMacro(NumberOfShards, int);
  /** CPU threads of the backend (0 = OpenMP default). */
  itkSetMacro(NumberOfThreads, int);
  itkGetConstMacro(NumberOfThreads, int);
  itkSetMacro(Seed, unsigned int);
  itkGetConstMacro(Seed, unsigned int);

  /** Progress state, valid inside IterationEvent observers and after Update. */
  itkGetConstMacro(CurrentStage, int);
  itkGetConstMacro(CurrentLevel, int);
  itkGetConstMacro(CurrentIteration, int);
  itkGetConstMacro(CurrentMetricValue, double);
  itkGetConstMacro(NumberOfLevelsInCurrentStage, int);

  /** Results of the last Update. */
  const DecoratedOutputTransformType *
  GetOutput() const;
  const OutputTransformType *
  GetTransform() const
  {
    return this->GetOutput()->Get();
  }
  /** Self-contained forward field on the fixed grid (x + d(x) = moving point);
   * nullptr for a purely linear run. */
  itkGetModifiableObjectMacro(ForwardDisplacementField, DisplacementFieldType);
  /** The core's per-stage results (elastix parameters, centre, final metric). */
  const std::vector<gr_stage_result> &
  GetStageResults() const
  {
    return m_Results;
  }

protected:
  GigaRegImageRegistrationMethod();
  ~GigaRegImageRegistrationMethod() override;
  void
  GenerateData() override;
  void
  PrintSelf(std::ostream & os, Indent indent) const override;
  using Superclass::MakeOutput;
  DataObjectPointer
  MakeOutput(DataObjectPointerArraySizeType) override;

private:
  static void
  OnProgress(void * user, const gr_progress_info * info);
  void
  ClearResults();

  std::vector<StageConfig>             m_Stages;
  std::vector<gr_stage_result>         m_Results;
  LinearTransformType::ConstPointer    m_InitialTransform;
  typename DisplacementFieldType::Pointer m_ForwardDisplacementField;
  std::string                          m_Device{ "auto" };
  int                                  m_NumberOfShards{ 1 };
  int                                  m_NumberOfThreads{ 0 };
  unsigned int                         m_Seed{ 0 };
  int                                  m_CurrentStage{ 0 };
  int                                  m_CurrentLevel{ 0 };
  int                                  m_CurrentIteration{ 0 };
  int                                  m_NumberOfLevelsInCurrentStage{ 0 };
  double                               m_CurrentMetricValue{ 0.0 };
};
} // namespace itk

#ifndef ITK_MANUAL_INSTANTIATION
#  include "itkGigaRegImageRegistrationMethod.hxx"
#endif

#endif
