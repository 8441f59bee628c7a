#ifndef itkGigaRegImageToImageMetricv4_hxx
#define itkGigaRegImageToImageMetricv4_hxx

#include <cmath>
#include <vector>

#include "itkGigaRegImageToImageMetricv4.h"

namespace itk
{

template <typename TF, typename TM, typename TV, typename TI, typename TT>
GigaRegImageToImageMetricv4<TF, TM, TV, TI, TT>::GigaRegImageToImageMetricv4()
{
  this->m_DenseGetValueAndDerivativeThreader =
    GigaRegNullMetricThreader<ThreadedImageRegionPartitioner<Superclass::VirtualImageDimension>, Superclass>::New();
  this->m_SparseGetValueAndDerivativeThreader =
    GigaRegNullMetricThreader<ThreadedIndexedContainerPartitioner, Superclass>::New();
  // The core differentiates its own trilinear sampler; ITK's gradient images
  // would only cost a full smoothed-gradient pass per level.
  this->SetUseFixedImageGradientFilter(false);
  this->SetUseMovingImageGradientFilter(false);
}

template <typename TF, typename TM, typename TV, typename TI, typename TT>
GigaRegImageToImageMetricv4<TF, TM, TV, TI, TT>::~GigaRegImageToImageMetricv4()
{
  this->ReleaseDeviceData();
}

template <typename TF, typename TM, typename TV, typename TI, typename TT>
void
GigaRegImageToImageMetricv4<TF, TM, TV, TI, TT>::ReleaseDeviceData()
{
  if (!m_Backend)
  {
    return;
  }
  gr_backend * be = m_Backend.get();
  for (float ** p : { &m_FixedDev, &m_FixedMaskDev, &m_MovingDev, &m_MovingMaskDev })
  {
    if (*p)
    {
      be->ops->free(be, *p);
      *p = nullptr;
    }
  }
}

template <typename TF, typename TM, typename TV, typename TI, typename TT>
float *
GigaRegImageToImageMetricv4<TF, TM, TV, TI, TT>::Upload(const gr_image * img, int ncomp) const
{
  gr_backend * be = m_Backend.get();
  const size_t bytes = sizeof(float) * static_cast<size_t>(gr_image_nvox(img)) * static_cast<size_t>(ncomp);
  auto *       dst = static_cast<float *>(be->ops->alloc(be, bytes));
  if (!dst)
  {
    itkExceptionMacro(<< "GigaReg: backend allocation of " << bytes << " bytes failed");
  }
  itkGigaRegCheck(be->ops->upload(be, dst, img->data, bytes), "upload");
  return dst;
}

template <typename TF, typename TM, typename TV, typename TI, typename TT>
void
GigaRegImageToImageMetricv4<TF, TM, TV, TI, TT>::Initialize()
{
  Superclass::Initialize();
  this->ReleaseDeviceData(); // on the backend that allocated it, before a device change
  if (!m_Backend || m_BackendDevice != m_Device)
  {
    m_Backend = gigareg::MakeBackend(m_Device);
    m_BackendDevice = m_Device;
  }

  const auto * virtualImage = this->GetVirtualImage();
  const auto & vregion = this->GetVirtualRegion();
  typename TV::PointType vorigin;
  virtualImage->TransformIndexToPhysicalPoint(vregion.GetIndex(), vorigin);
  m_VirtualGeometry = gigareg::GeometryFromGrid(
    vorigin, virtualImage->GetSpacing(), virtualImage->GetDirection(), vregion.GetSize());

  // Whole-image ranges, as gr_register normalises (masks do not enter them).
  const TF * fixed = this->GetFixedImage();
  const TM * moving = this->GetMovingImage();
  auto       fixedRaw = gigareg::ImageToGr(fixed);
  auto       movingRaw = gigareg::ImageToGr(moving);
  double     flo, fhi, mlo, mhi;
  gigareg::PlaneRange(fixedRaw.get(), nullptr, flo, fhi);
  gigareg::PlaneRange(movingRaw.get(), nullptr, mlo, mhi);
  if (m_MetricKind == GR_METRIC_MSE)
  {
    // MSE compares raw intensities: one shared map keeps their difference meaningful.
    flo = mlo = std::min(flo, mlo);
    fhi = mhi = std::max(fhi, mhi);
  }
  m_FixedLo = flo;
  m_FixedScale = m_IntensityScale * (fhi > flo ? 1.0 / (fhi - flo) : 1.0);
  const double movingScale = m_IntensityScale * (mhi > mlo ? 1.0 / (mhi - mlo) : 1.0);
  auto         movingNorm = gigareg::ImageToGr(moving, mlo, movingScale);
  m_MovingGeometry = movingNorm->geom;
  m_MovingDev = this->Upload(movingNorm.get(), 1);
  auto movingMask = gigareg::RasteriseMask(this->GetMovingImageMask(), m_MovingGeometry);
  if (movingMask)
  {
    m_MovingMaskDev = this->Upload(movingMask.get(), 1);
  }

  std::memset(&m_Spec, 0, sizeof m_Spec);
  m_Spec.kind = static_cast<gr_metric_kind>(m_MetricKind);
  m_Spec.lncc_radius = m_Radius;
  m_Spec.mi_bins = m_NumberOfHistogramBins;
  // Mattes' joint histogram spans the intensities under each image's own mask
  // (ITK's MattesMutualInformationImageToImageMetricv4::Initialize does the same).
  {
    auto fixedNorm = gigareg::ImageToGr(fixed, m_FixedLo, m_FixedScale);
    auto fixedMask = gigareg::RasteriseMask(this->GetFixedImageMask(), fixedNorm->geom);
    gigareg::PlaneRange(fixedNorm.get(), fixedMask.get(), m_Spec.fixed_min, m_Spec.fixed_max);
    gigareg::PlaneRange(movingNorm.get(), movingMask.get(), m_Spec.moving_min, m_Spec.moving_max);
  }
  m_FixedTransformSeen = nullptr;
}

template <typename TF, typename TM, typename TV, typename TI, typename TT>
void
GigaRegImageToImageMetricv4<TF, TM, TV, TI, TT>::PrepareFixedOnVirtual() const
{
  const auto * ft = this->GetFixedTransform();
  if (m_FixedDev && m_FixedTransformSeen == ft && m_FixedTransformMTime == ft->GetMTime())
  {
    return;
  }
  gr_backend * be = m_Backend.get();
  for (float ** p : { &m_FixedDev, &m_FixedMaskDev })
  {
    if (*p)
    {
      be->ops->free(be, *p);
      *p = nullptr;
    }
  }
  auto        fixedNorm = gigareg::ImageToGr(this->GetFixedImage(), m_FixedLo, m_FixedScale);
  gr_affine   identity;
  gr_affine   a;
  gr_affine_identity(&identity);
  bool isIdentity = gigareg::LinearTransformToAffine(ft, a);
  for (int i = 0; isIdentity && i < 12; ++i)
  {
    isIdentity = std::abs(a.m[i] - identity.m[i]) < 1e-12;
  }
  if (isIdentity && gr_geometry_same(&fixedNorm->geom, &m_VirtualGeometry))
  {
    m_FixedDev = this->Upload(fixedNorm.get(), 1);
  }
  else
  {
    // The core evaluates the fixed image at virtual voxels; a fixed transform or a
    // different virtual grid (ImageRegistrationMethodv4 shrinks only the virtual
    // domain) is folded in once here, with ITK's linear-interpolation values.
    auto       form = gigareg::DecomposeTransform(ft, m_VirtualGeometry);
    gr_grid    vg, fg;
    gr_image * out = nullptr;
    itkGigaRegCheck(gr_grid_from_geometry(&m_VirtualGeometry, &vg), "virtual grid");
    itkGigaRegCheck(gr_grid_from_geometry(&fixedNorm->geom, &fg), "fixed grid");
    itkGigaRegCheck(gr_image_create(&m_VirtualGeometry, 1, &out), "fixed on virtual grid");
    gigareg::GrImagePointer outPtr(out);
    gigareg::DeviceBuffer   in(be, this->Upload(fixedNorm.get(), 1));
    gigareg::DeviceBuffer   disp(be, form.disp ? this->Upload(form.disp.get(), 3) : nullptr);
    gigareg::DeviceBuffer   res(be, this->Upload(out, 1));
    const gr_status         s = be->ops->resample(be, &vg, res.get(), &fg, in.get(), 1, &form.affine, disp.get(),
                                              GR_INTERP_LINEAR, GR_BOUNDARY_CLAMP);
    m_FixedDev = res.release();
    itkGigaRegCheck(s, "fixed image resampling");
  }
  auto fixedMask = gigareg::RasteriseMask(this->GetFixedImageMask(), m_VirtualGeometry, isIdentity ? nullptr : ft);
  if (fixedMask)
  {
    m_FixedMaskDev = this->Upload(fixedMask.get(), 1);
  }
  m_FixedTransformSeen = ft;
  m_FixedTransformMTime = ft->GetMTime();
}

template <typename TF, typename TM, typename TV, typename TI, typename TT>
auto
GigaRegImageToImageMetricv4<TF, TM, TV, TI, TT>::Evaluate(DerivativeType * derivative) const -> MeasureType
{
  if (!m_MovingDev)
  {
    itkExceptionMacro(<< "Initialize() must be called before evaluating the metric");
  }
  this->PrepareFixedOnVirtual();
  gr_backend *               be = m_Backend.get();
  const MovingTransformType * mt = this->GetMovingTransform();
  auto                       form = gigareg::DecomposeTransform(mt, m_VirtualGeometry);
  const bool local = form.fieldIsParameters &&
                     mt->GetTransformCategory() == MovingTransformType::TransformCategoryEnum::DisplacementField;
  if (derivative && !form.linear && !local)
  {
    itkExceptionMacro(<< "GigaReg metric derivative: moving transform " << mt->GetNameOfClass()
                      << " is neither linear nor a displacement field on the virtual grid");
  }
  gr_metric_spec spec = m_Spec;
  spec.want_affine_grad = derivative && form.linear;
  spec.want_field_grad = derivative && local;

  const int64_t n = gr_geometry_nvox(&m_VirtualGeometry);
  gr_grid       vg, mg;
  itkGigaRegCheck(gr_grid_from_geometry(&m_VirtualGeometry, &vg), "virtual grid");
  itkGigaRegCheck(gr_grid_from_geometry(&m_MovingGeometry, &mg), "moving grid");
  float * disp = form.disp ? this->Upload(form.disp.get(), 3) : nullptr;
  float * grad = nullptr;
  if (spec.want_field_grad)
  {
    grad = static_cast<float *>(be->ops->alloc(be, sizeof(float) * 3 * static_cast<size_t>(n)));
  }
  gr_metric_result res;
  std::memset(&res, 0, sizeof res);
  gr_status s = (spec.want_field_grad && !grad)
                  ? GR_ERR_NOMEM
                  : be->ops->metric(be, &spec, &vg, m_FixedDev, m_FixedMaskDev, &mg, m_MovingDev, m_MovingMaskDev,
                                    &form.affine, disp, &res, grad);
  std::vector<float> gradHost;
  if (s == GR_OK && grad)
  {
    gradHost.resize(3 * static_cast<size_t>(n));
    s = be->ops->download(be, gradHost.data(), grad, sizeof(float) * gradHost.size());
  }
  if (disp)
  {
    be->ops->free(be, disp);
  }
  if (grad)
  {
    be->ops->free(be, grad);
  }
  itkGigaRegCheck(s, "metric evaluation");

  this->m_NumberOfValidPoints = static_cast<SizeValueType>(res.n_valid);
  const NumberOfParametersType np = this->GetNumberOfParameters();
  if (derivative)
  {
    derivative->SetSize(np);
    derivative->Fill(NumericTraits<typename DerivativeType::ValueType>::ZeroValue());
  }
  if (res.n_valid == 0)
  {
    // ITK's convention for "no overlap": the largest value and a zero step.
    itkWarningMacro(<< "GigaReg metric: no valid points (no overlap between fixed and moving images)");
    this->m_Value = NumericTraits<MeasureType>::max();
    return this->m_Value;
  }
  this->m_Value = res.value;
  if (derivative && form.linear)
  {
    std::vector<double> g(np);
    gigareg::AffineGradientToParameters(mt, res.grad_affine, g.data(), static_cast<unsigned int>(np));
    for (NumberOfParametersType k = 0; k < np; ++k)
    {
      (*derivative)[k] = -g[k];
    }
  }
  else if (derivative)
  {
    if (np != static_cast<NumberOfParametersType>(3 * n))
    {
      itkExceptionMacro(<< "GigaReg metric: displacement field with " << np << " parameters on a grid of " << n
                        << " voxels");
    }
    const double N = m_LocalDerivativeTimesNumberOfPoints ? static_cast<double>(res.n_valid) : 1.0;
    for (int64_t v = 0; v < n; ++v)
    {
      for (int a = 0; a < 3; ++a)
      {
        (*derivative)[3 * v + a] = -N * static_cast<double>(gradHost[a * n + v]);
      }
    }
  }
  return this->m_Value;
}

template <typename TF, typename TM, typename TV, typename TI, typename TT>
auto
GigaRegImageToImageMetricv4<TF, TM, TV, TI, TT>::GetValue() const -> MeasureType
{
  return this->Evaluate(nullptr);
}

template <typename TF, typename TM, typename TV, typename TI, typename TT>
void
GigaRegImageToImageMetricv4<TF, TM, TV, TI, TT>::GetDerivative(DerivativeType & derivative) const
{
  this->Evaluate(&derivative);
}

template <typename TF, typename TM, typename TV, typename TI, typename TT>
void
GigaRegImageToImageMetricv4<TF, TM, TV, TI, TT>::GetValueAndDerivative(MeasureType &    value,
                                                                      DerivativeType & derivative) const
{
  value = this->Evaluate(&derivative);
}

template <typename TF, typename TM, typename TV, typename TI, typename TT>
void
GigaRegImageToImageMetricv4<TF, TM, TV, TI, TT>::PrintSelf(std::ostream & os, Indent indent) const
{
  Superclass::PrintSelf(os, indent);
  os << indent << "MetricKind: " << m_MetricKind << std::endl;
  os << indent << "Radius: " << m_Radius << std::endl;
  os << indent << "NumberOfHistogramBins: " << m_NumberOfHistogramBins << std::endl;
  os << indent << "IntensityScale: " << m_IntensityScale << std::endl;
  os << indent << "LocalDerivativeTimesNumberOfPoints: " << m_LocalDerivativeTimesNumberOfPoints << std::endl;
  os << indent << "Device: " << m_Device << std::endl;
}

} // namespace itk

#endif
