/*=========================================================================
 * GigaReg ITK layer: ResampleImageFilter on the core's composite sampler.
 *=========================================================================*/
#ifndef itkGigaRegResampleImageFilter_h
#define itkGigaRegResampleImageFilter_h

#include <string>

#include "itkGigaRegCore.h"
#include "itkResampleImageFilter.h"

namespace itk
{
/** \class GigaRegResampleImageFilter
 * \brief ResampleImageFilter whose linear / nearest-neighbour case runs on the core.
 *
 * The transform is brought to the core's form y = A (x + u(x)) + t on the
 * output grid (gigareg::DecomposeTransform): linear transforms and composites of
 * them exactly; a displacement field on the output grid applied first directly;
 * any other transform by evaluating it once per output voxel. The core then
 * samples every voxel in one call. Values follow ResampleImageFilter +
 * LinearInterpolateImageFunction (or NearestNeighbor...): voxels whose mapped
 * continuous index lies outside [-0.5, n - 0.5) get DefaultPixelValue (ITK's
 * IsInsideBuffer rule), the outer half voxel takes the border value (CLAMP).
 * Other interpolators, an extrapolator, or a non-float/non-3D image fall back
 * to ResampleImageFilter itself, so the class is safe as a factory override.
 * \ingroup GigaReg
 */
template <typename TInputImage, typename TOutputImage = TInputImage>
class ITK_TEMPLATE_EXPORT GigaRegResampleImageFilter : public ResampleImageFilter<TInputImage, TOutputImage, double, double>
{
public:
  ITK_DISALLOW_COPY_AND_MOVE(GigaRegResampleImageFilter);
  using Self = GigaRegResampleImageFilter;
  using Superclass = ResampleImageFilter<TInputImage, TOutputImage, double, double>;
  using Pointer = SmartPointer<Self>;
  using ConstPointer = SmartPointer<const Self>;
  itkNewMacro(Self);
  itkTypeMacro(GigaRegResampleImageFilter, ResampleImageFilter);

  /** Backend: "cpu", "cuda", "cuda:N" or "auto" (the default, as the CLI: CUDA when
   * compiled in and a GPU is present). */
  itkSetStringMacro(Device);
  itkGetStringMacro(Device);
  /** True when the last Update ran on the core (false: ITK's own path). */
  itkGetConstMacro(UsedCore, bool);

protected:
  GigaRegResampleImageFilter() = default;
  ~GigaRegResampleImageFilter() override = default;
  void
  GenerateData() override;
  void
  PrintSelf(std::ostream & os, Indent indent) const override;

private:
  std::string             m_Device{ "auto" };
  gigareg::BackendPointer m_Backend;
  std::string             m_BackendDevice;
  bool                    m_UsedCore{ false };
};
} // namespace itk

#ifndef ITK_MANUAL_INSTANTIATION
#  include "itkGigaRegResampleImageFilter.hxx"
#endif

#endif
