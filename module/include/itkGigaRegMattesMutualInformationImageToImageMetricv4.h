/*=========================================================================
 * GigaReg ITK layer: Mattes mutual information on the core.
 *=========================================================================*/
#ifndef itkGigaRegMattesMutualInformationImageToImageMetricv4_h
#define itkGigaRegMattesMutualInformationImageToImageMetricv4_h

#include "itkGigaRegImageToImageMetricv4.h"

namespace itk
{
/** \class GigaRegMattesMutualInformationImageToImageMetricv4
 * \brief Drop-in for MattesMutualInformationImageToImageMetricv4 with dense sampling.
 *
 * Value: -MI of the Parzen joint histogram (fixed: zero-order box, moving:
 * cubic B-spline), bins spaced (max - min) / (B - 5) with two padding bins, the
 * ranges taken under each image's mask: ITK's Mattes construction. The core
 * accumulates the histogram in 2^-32 fixed point (bitwise reproducible for any
 * thread count). Every virtual voxel is a sample (no sampling strategy).
 * \ingroup GigaReg
 */
template <typename TFixedImage, typename TMovingImage, typename TVirtualImage = TFixedImage,
          typename TInternalComputationValueType = double,
          typename TMetricTraits =
            DefaultImageToImageMetricTraitsv4<TFixedImage, TMovingImage, TVirtualImage, TInternalComputationValueType>>
class ITK_TEMPLATE_EXPORT GigaRegMattesMutualInformationImageToImageMetricv4
  : public GigaRegImageToImageMetricv4<TFixedImage, TMovingImage, TVirtualImage, TInternalComputationValueType,
                                       TMetricTraits>
{
public:
  ITK_DISALLOW_COPY_AND_MOVE(GigaRegMattesMutualInformationImageToImageMetricv4);
  using Self = GigaRegMattesMutualInformationImageToImageMetricv4;
  using Superclass = GigaRegImageToImageMetricv4<TFixedImage, TMovingImage, TVirtualImage,
                                                 TInternalComputationValueType, TMetricTraits>;
  using Pointer = SmartPointer<Self>;
  using ConstPointer = SmartPointer<const Self>;
  itkNewMacro(Self);
  itkTypeMacro(GigaRegMattesMutualInformationImageToImageMetricv4, GigaRegImageToImageMetricv4);

protected:
  GigaRegMattesMutualInformationImageToImageMetricv4()
  {
    this->SetMetricKind(GR_METRIC_MI);
    this->SetLocalDerivativeTimesNumberOfPoints(false); // Mattes' scale: see the base class
  }
  ~GigaRegMattesMutualInformationImageToImageMetricv4() override = default;
};
} // namespace itk

#endif
