/*=========================================================================
 * GigaReg ITK layer: trilinear point evaluation by the core's sampler.
 *=========================================================================*/
#ifndef itkGigaRegLinearInterpolateImageFunction_h
#define itkGigaRegLinearInterpolateImageFunction_h

#include <mutex>

#include "itkGigaRegCore.h"
#include "itkInterpolateImageFunction.h"

namespace itk
{
/** \class GigaRegLinearInterpolateImageFunction
 * \brief LinearInterpolateImageFunction semantics evaluated by the core.
 *
 * Inside the buffer ([-0.5, n - 0.5) in continuous index, ITK's IsInsideBuffer)
 * the value equals LinearInterpolateImageFunction's: trilinear inside the grid,
 * the border voxel's value in the outer half voxel (the core's CLAMP boundary).
 * Each call is one core resample of a single point on a private copy of the
 * image, serialised by a mutex: this class is for ITK code that needs an
 * interpolator object; whole images go through GigaRegResampleImageFilter,
 * which samples every voxel in one core call.
 * \ingroup GigaReg
 */
template <typename TInputImage, typename TCoordRep = double>
class ITK_TEMPLATE_EXPORT GigaRegLinearInterpolateImageFunction : public InterpolateImageFunction<TInputImage, TCoordRep>
{
public:
  ITK_DISALLOW_COPY_AND_MOVE(GigaRegLinearInterpolateImageFunction);
  using Self = GigaRegLinearInterpolateImageFunction;
  using Superclass = InterpolateImageFunction<TInputImage, TCoordRep>;
  using Pointer = SmartPointer<Self>;
  using ConstPointer = SmartPointer<const Self>;
  itkNewMacro(Self);
  itkTypeMacro(GigaRegLinearInterpolateImageFunction, InterpolateImageFunction);

  using OutputType = typename Superclass::OutputType;
  using InputImageType = typename Superclass::InputImageType;
  using ContinuousIndexType = typename Superclass::ContinuousIndexType;
  using SizeType = typename Superclass::SizeType;
  static_assert(TInputImage::ImageDimension == 3, "GigaReg interpolation is 3D");

  /** Backend: "cpu", "cuda", "cuda:N" or "auto" (the default); read by SetInputImage. */
  itkSetStringMacro(Device);
  itkGetStringMacro(Device);

  void
  SetInputImage(const InputImageType * ptr) override
  {
    Superclass::SetInputImage(ptr);
    std::lock_guard<std::mutex> lock(m_Mutex);
    this->Release();
    if (!ptr)
    {
      return;
    }
    if (!m_Backend || m_BackendDevice != m_Device)
    {
      m_Backend = gigareg::MakeBackend(m_Device);
      m_BackendDevice = m_Device;
    }
    gr_backend * be = m_Backend.get();
    auto         img = gigareg::ImageToGr(ptr);
    itkGigaRegCheck(gr_grid_from_geometry(&img->geom, &m_Grid), "interpolator grid");
    const size_t bytes = sizeof(float) * static_cast<size_t>(gr_image_nvox(img.get()));
    m_Data = static_cast<float *>(be->ops->alloc(be, bytes));
    m_Out = static_cast<float *>(be->ops->alloc(be, sizeof(float)));
    if (!m_Data || !m_Out)
    {
      this->Release();
      itkExceptionMacro(<< "GigaReg: backend allocation failed");
    }
    itkGigaRegCheck(be->ops->upload(be, m_Data, img->data, bytes), "interpolator upload");
  }

  OutputType
  EvaluateAtContinuousIndex(const ContinuousIndexType & index) const override
  {
    // A one-voxel output grid whose index->physical map is "the point itself":
    // i2p's offset is the physical point of `index` in the input grid.
    typename TInputImage::PointType p;
    this->GetInputImage()->TransformContinuousIndexToPhysicalPoint(index, p);
    gr_grid out;
    std::memset(&out, 0, sizeof out);
    out.n[0] = out.n[1] = out.n[2] = 1;
    for (int r = 0; r < 3; ++r)
    {
      out.i2p[r * 4 + r] = 1.0;
      out.p2i[r * 4 + r] = 1.0;
      out.i2p[r * 4 + 3] = p[r];
      out.p2i[r * 4 + 3] = -p[r];
    }
    std::lock_guard<std::mutex> lock(m_Mutex);
    gr_backend *                be = m_Backend.get();
    float                       v = 0.0f;
    gr_status s = be->ops->resample(be, &out, m_Out, &m_Grid, m_Data, 1, nullptr, nullptr, GR_INTERP_LINEAR,
                                    GR_BOUNDARY_CLAMP);
    if (s == GR_OK)
    {
      s = be->ops->download(be, &v, m_Out, sizeof v);
    }
    itkGigaRegCheck(s, "point interpolation");
    return static_cast<OutputType>(v);
  }

  SizeType
  GetRadius() const override
  {
    return SizeType::Filled(1);
  }

protected:
  GigaRegLinearInterpolateImageFunction() = default;
  ~GigaRegLinearInterpolateImageFunction() override { this->Release(); }
  void
  PrintSelf(std::ostream & os, Indent indent) const override
  {
    Superclass::PrintSelf(os, indent);
    os << indent << "Device: " << m_Device << std::endl;
  }

private:
  void
  Release()
  {
    if (m_Backend)
    {
      gr_backend * be = m_Backend.get();
      if (m_Data)
        be->ops->free(be, m_Data);
      if (m_Out)
        be->ops->free(be, m_Out);
    }
    m_Data = m_Out = nullptr;
  }

  std::string             m_Device{ "auto" };
  gigareg::BackendPointer m_Backend;
  std::string             m_BackendDevice;
  gr_grid                 m_Grid{};
  float *                 m_Data{ nullptr };
  float *                 m_Out{ nullptr };
  mutable std::mutex      m_Mutex;
};
} // namespace itk

#endif
