#ifndef itkGigaRegResampleImageFilter_hxx
#define itkGigaRegResampleImageFilter_hxx

#include <type_traits>

#include "itkGigaRegLinearInterpolateImageFunction.h"
#include "itkGigaRegResampleImageFilter.h"
#include "itkLinearInterpolateImageFunction.h"
#include "itkNearestNeighborInterpolateImageFunction.h"

namespace itk
{

template <typename TInputImage, typename TOutputImage>
void
GigaRegResampleImageFilter<TInputImage, TOutputImage>::GenerateData()
{
  m_UsedCore = false;
  constexpr bool scalar3D = TInputImage::ImageDimension == 3 && TOutputImage::ImageDimension == 3 &&
                            std::is_arithmetic<typename TInputImage::PixelType>::value &&
                            std::is_arithmetic<typename TOutputImage::PixelType>::value;
  const auto * interp = this->GetInterpolator();
  gr_interp    mode = GR_INTERP_LINEAR;
  bool         supported = scalar3D && this->GetExtrapolator() == nullptr && this->GetTransform() != nullptr;
  if (dynamic_cast<const LinearInterpolateImageFunction<TInputImage, double> *>(interp) ||
      dynamic_cast<const GigaRegLinearInterpolateImageFunction<TInputImage, double> *>(interp))
  {
    mode = GR_INTERP_LINEAR;
  }
  else if (dynamic_cast<const NearestNeighborInterpolateImageFunction<TInputImage, double> *>(interp))
  {
    mode = GR_INTERP_NEAREST;
  }
  else
  {
    supported = false;
  }
  if (!supported)
  {
    Superclass::GenerateData();
    return;
  }

  this->AllocateOutputs();
  const TInputImage * input = this->GetInput();
  TOutputImage *      output = this->GetOutput();
  if (!m_Backend || m_BackendDevice != m_Device)
  {
    m_Backend = gigareg::MakeBackend(m_Device);
    m_BackendDevice = m_Device;
  }
  gr_backend *      be = m_Backend.get();
  const gr_geometry outGeom = gigareg::GeometryFromImage(output);
  auto              in = gigareg::ImageToGr(input);
  auto              form = gigareg::DecomposeTransform(this->GetTransform(), outGeom);
  gr_grid           og, ig;
  itkGigaRegCheck(gr_grid_from_geometry(&outGeom, &og), "output grid");
  itkGigaRegCheck(gr_grid_from_geometry(&in->geom, &ig), "input grid");

  const int64_t n = gr_geometry_nvox(&outGeom), nin = gr_image_nvox(in.get());
  float *       inDev = static_cast<float *>(be->ops->alloc(be, sizeof(float) * static_cast<size_t>(nin)));
  float *       outDev = static_cast<float *>(be->ops->alloc(be, sizeof(float) * static_cast<size_t>(n)));
  float * dispDev = form.disp ? static_cast<float *>(be->ops->alloc(be, sizeof(float) * 3 * static_cast<size_t>(n)))
                              : nullptr;
  gr_status s = (!inDev || !outDev || (form.disp && !dispDev)) ? GR_ERR_NOMEM : GR_OK;
  if (s == GR_OK)
  {
    s = be->ops->upload(be, inDev, in->data, sizeof(float) * static_cast<size_t>(nin));
  }
  if (s == GR_OK && dispDev)
  {
    s = be->ops->upload(be, dispDev, form.disp->data, sizeof(float) * 3 * static_cast<size_t>(n));
  }
  if (s == GR_OK)
  {
    s = be->ops->resample(be, &og, outDev, &ig, inDev, 1, &form.affine, dispDev, mode, GR_BOUNDARY_CLAMP);
  }
  std::vector<float> host(static_cast<size_t>(n));
  if (s == GR_OK)
  {
    s = be->ops->download(be, host.data(), outDev, sizeof(float) * host.size());
  }
  for (float * p : { inDev, outDev, dispDev })
  {
    if (p)
    {
      be->ops->free(be, p);
    }
  }
  itkGigaRegCheck(s, "resampling");

  // ITK's IsInsideBuffer: continuous index in [-0.5, n - 0.5) on every axis,
  // evaluated at the same composite point the core sampled.
  const double                           dflt = static_cast<double>(this->GetDefaultPixelValue());
  typename TOutputImage::PixelType *     dst = output->GetBufferPointer();
  const float *                          u = form.disp ? form.disp->data : nullptr;
  const double *                         M = form.affine.m;
  int64_t                                v = 0;
  for (int64_t k = 0; k < outGeom.size[2]; ++k)
  {
    for (int64_t j = 0; j < outGeom.size[1]; ++j)
    {
      for (int64_t i = 0; i < outGeom.size[0]; ++i, ++v)
      {
        double x[3], y[3];
        for (int r = 0; r < 3; ++r)
        {
          x[r] = og.i2p[r * 4] * i + og.i2p[r * 4 + 1] * j + og.i2p[r * 4 + 2] * k + og.i2p[r * 4 + 3] +
                 (u ? u[r * n + v] : 0.0f);
        }
        for (int r = 0; r < 3; ++r)
        {
          y[r] = M[r * 4] * x[0] + M[r * 4 + 1] * x[1] + M[r * 4 + 2] * x[2] + M[r * 4 + 3];
        }
        bool inside = true;
        for (int r = 0; r < 3 && inside; ++r)
        {
          const double c = ig.p2i[r * 4] * y[0] + ig.p2i[r * 4 + 1] * y[1] + ig.p2i[r * 4 + 2] * y[2] + ig.p2i[r * 4 + 3];
          inside = c >= -0.5 && c < static_cast<double>(ig.n[r]) - 0.5;
        }
        dst[v] = static_cast<typename TOutputImage::PixelType>(inside ? static_cast<double>(host[v]) : dflt);
      }
    }
  }
  m_UsedCore = true;
}

template <typename TInputImage, typename TOutputImage>
void
GigaRegResampleImageFilter<TInputImage, TOutputImage>::PrintSelf(std::ostream & os, Indent indent) const
{
  Superclass::PrintSelf(os, indent);
  os << indent << "Device: " << m_Device << std::endl;
  os << indent << "UsedCore: " << m_UsedCore << std::endl;
}

} // namespace itk

#endif
