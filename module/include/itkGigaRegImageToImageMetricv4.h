/*=========================================================================
 * GigaReg ITK layer: ImageToImageMetricv4 whose value and derivative come
 * from the C core's fused warp + metric kernel (backend.h, ops->metric),
 * evaluated densely on the whole virtual grid in one call.
 *=========================================================================*/
#ifndef itkGigaRegImageToImageMetricv4_h
#define itkGigaRegImageToImageMetricv4_h

#include <string>

#include "itkGigaRegCore.h"
#include "itkImageToImageMetricv4.h"
#include "itkImageToImageMetricv4GetValueAndDerivativeThreader.h"

namespace itk
{

/** \class GigaRegNullMetricThreader
 * ImageToImageMetricv4 forwards thread-count settings to its two threaders,
 * so they must exist; the core does all evaluation, so they never run. */
template <typename TDomainPartitioner, typename TMetric>
class ITK_TEMPLATE_EXPORT GigaRegNullMetricThreader
  : public ImageToImageMetricv4GetValueAndDerivativeThreader<TDomainPartitioner, TMetric>
{
public:
  ITK_DISALLOW_COPY_AND_MOVE(GigaRegNullMetricThreader);
  using Self = GigaRegNullMetricThreader;
  using Superclass = ImageToImageMetricv4GetValueAndDerivativeThreader<TDomainPartitioner, TMetric>;
  using Pointer = SmartPointer<Self>;
  itkNewMacro(Self);
  itkTypeMacro(GigaRegNullMetricThreader, ImageToImageMetricv4GetValueAndDerivativeThreader);

  bool
  ProcessPoint(const typename Superclass::VirtualIndexType &,
               const typename Superclass::VirtualPointType &,
               const typename Superclass::FixedImagePointType &,
               const typename Superclass::FixedImagePixelType &,
               const typename Superclass::FixedImageGradientType &,
               const typename Superclass::MovingImagePointType &,
               const typename Superclass::MovingImagePixelType &,
               const typename Superclass::MovingImageGradientType &,
               typename Superclass::MeasureType &,
               typename Superclass::DerivativeType &,
               const ThreadIdType) const override
  {
    return false;
  }

protected:
  GigaRegNullMetricThreader() = default;
};

/** \class GigaRegImageToImageMetricv4
 * \brief Base of the GigaReg metrics: one core call per evaluation.
 *
 * Conventions (those of ITK's v4 metrics, so the class is a drop-in):
 *  - GetValue returns a value to MINIMISE (the core's loss: -LNCC, -MI, MSE).
 *  - GetDerivative returns the NEGATIVE gradient of that value (ITK v4
 *    optimisers add learningRate * derivative to the parameters).
 *  - Global transforms: the derivative of the mean over valid points.
 *  - Displacement-field transforms (local support): ITK's threader does not
 *    divide per-point derivatives by N, so their scale is each ITK metric's own:
 *    per-point terms (ANTS CC, MeanSquares: N * (-d value / d u(x))) or the
 *    derivative of the value itself (Mattes, whose histogram is normalised).
 *    LocalDerivativeTimesNumberOfPoints selects the former (the default; the
 *    Mattes subclass turns it off).
 *
 * Images are mapped to [0, 1] by their (whole-image) intensity range before the
 * core sees them, as gr_register does: the core's LNCC epsilon is chosen for
 * that scale; LNCC and MI are invariant to the map otherwise.
 *
 * Supported moving transforms: any linear transform (and composites of them),
 * and a DisplacementFieldTransform on the virtual grid acting first (alone or
 * followed by linear transforms). Other transforms are evaluated (value only)
 * by sampling them densely on the virtual grid. The fixed transform may be
 * anything: the fixed image is resampled through it onto the virtual grid once
 * per change.
 *
 * \ingroup GigaReg
 */
template <typename TFixedImage,
          typename TMovingImage,
          typename TVirtualImage = TFixedImage,
          typename TInternalComputationValueType = double,
          typename TMetricTraits =
            DefaultImageToImageMetricTraitsv4<TFixedImage, TMovingImage, TVirtualImage, TInternalComputationValueType>>
class ITK_TEMPLATE_EXPORT GigaRegImageToImageMetricv4
  : public ImageToImageMetricv4<TFixedImage, TMovingImage, TVirtualImage, TInternalComputationValueType, TMetricTraits>
{
public:
  ITK_DISALLOW_COPY_AND_MOVE(GigaRegImageToImageMetricv4);

  using Self = GigaRegImageToImageMetricv4;
  using Superclass =
    ImageToImageMetricv4<TFixedImage, TMovingImage, TVirtualImage, TInternalComputationValueType, TMetricTraits>;
  using Pointer = SmartPointer<Self>;
  using ConstPointer = SmartPointer<const Self>;

  itkNewMacro(Self);
  itkTypeMacro(GigaRegImageToImageMetricv4, ImageToImageMetricv4);

  using MeasureType = typename Superclass::MeasureType;
  using DerivativeType = typename Superclass::DerivativeType;
  using MovingTransformType = typename Superclass::MovingTransformType;
  using NumberOfParametersType = typename Superclass::NumberOfParametersType;

  static_assert(TFixedImage::ImageDimension == 3 && TMovingImage::ImageDimension == 3, "GigaReg metrics are 3D");

  /** Which core metric: GR_METRIC_LNCC, GR_METRIC_MI, GR_METRIC_MSE, GR_METRIC_NCC. */
  itkSetMacro(MetricKind, int);
  itkGetConstMacro(MetricKind, int);
  /** LNCC window radius in voxels: the window is (2r+1)^3 (ANTS' Radius). */
  itkSetMacro(Radius, int);
  itkGetConstMacro(Radius, int);
  itkSetMacro(NumberOfHistogramBins, int);
  itkGetConstMacro(NumberOfHistogramBins, int);
  /** Images are mapped to [0, IntensityScale] before the core sees them. 1 is
   * gr_register's normalisation, for which the core's LNCC epsilon (1e-5,
   * absolute) is chosen: it damps flat, noise-only windows. A large scale makes
   * the epsilon negligible, i.e. ANTS' plain squared correlation everywhere. */
  itkSetMacro(IntensityScale, double);
  itkGetConstMacro(IntensityScale, double);
  itkSetMacro(LocalDerivativeTimesNumberOfPoints, bool);
  itkGetConstMacro(LocalDerivativeTimesNumberOfPoints, bool);
  itkBooleanMacro(LocalDerivativeTimesNumberOfPoints);
  /** Backend: "cpu", "cuda", "cuda:N" or "auto" (the default, as the CLI: CUDA when
   * compiled in and a GPU is present). */
  itkSetStringMacro(Device);
  itkGetStringMacro(Device);

  void
  Initialize() override;

  MeasureType
  GetValue() const override;
  void
  GetDerivative(DerivativeType & derivative) const override;
  void
  GetValueAndDerivative(MeasureType & value, DerivativeType & derivative) const override;

protected:
  GigaRegImageToImageMetricv4();
  ~GigaRegImageToImageMetricv4() override;
  void
  PrintSelf(std::ostream & os, Indent indent) const override;

  /** Core evaluation; derivative may be nullptr (value only). */
  MeasureType
  Evaluate(DerivativeType * derivative) const;

private:
  void
  ReleaseDeviceData();
  void
  PrepareFixedOnVirtual() const;
  float *
  Upload(const gr_image * img, int ncomp) const;

  int         m_MetricKind{ GR_METRIC_LNCC };
  int         m_Radius{ 2 };
  int         m_NumberOfHistogramBins{ 32 };
  double      m_IntensityScale{ 1.0 };
  bool        m_LocalDerivativeTimesNumberOfPoints{ true };
  std::string m_Device{ "auto" };

  gigareg::BackendPointer m_Backend;
  std::string             m_BackendDevice;
  gr_geometry             m_VirtualGeometry{};
  gr_geometry             m_MovingGeometry{};
  double                  m_FixedLo{ 0.0 }, m_FixedScale{ 1.0 };
  // Fixed image on the virtual grid: depends on the fixed transform, which may
  // change between evaluations (SyN-style methods move it), hence mutable.
  mutable float *         m_FixedDev{ nullptr };
  mutable float *         m_FixedMaskDev{ nullptr };
  mutable ModifiedTimeType m_FixedTransformMTime{ 0 };
  mutable const void *    m_FixedTransformSeen{ nullptr };
  float *                 m_MovingDev{ nullptr };
  float *                 m_MovingMaskDev{ nullptr };
  mutable gr_metric_spec  m_Spec{};
};

} // namespace itk

#ifndef ITK_MANUAL_INSTANTIATION
#  include "itkGigaRegImageToImageMetricv4.hxx"
#endif

#endif
