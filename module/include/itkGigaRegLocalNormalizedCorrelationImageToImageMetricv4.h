/*=========================================================================
 * GigaReg ITK layer: local normalised cross-correlation on the core.
 *=========================================================================*/
#ifndef itkGigaRegLocalNormalizedCorrelationImageToImageMetricv4_h
#define itkGigaRegLocalNormalizedCorrelationImageToImageMetricv4_h

#include "itkGigaRegImageToImageMetricv4.h"

namespace itk
{
/** \class GigaRegLocalNormalizedCorrelationImageToImageMetricv4
 * \brief Drop-in for ANTSNeighborhoodCorrelationImageToImageMetricv4.
 *
 * Value: -(1/N) sum_x cc(x), cc = A^2 / (B C + 1e-5) over the (2r+1)^3 box
 * restricted to the grid, on intensities mapped to [0, 1] (the squared local
 * correlation, as ANTS). Differences from ANTS, all by design of the core:
 * the moving image is zero-padded outside its grid (ANTS drops such points),
 * the epsilon keeps flat windows finite (ANTS skips them), and the derivative
 * is the exact derivative of the value (ANTS keeps only the centre term of
 * each window). SetRadius takes the radius of every axis (ANTS' Radius).
 * \ingroup GigaReg
 */
template <typename TFixedImage, typename TMovingImage, typename TVirtualImage = TFixedImage,
          typename TInternalComputationValueType = double,
          typename TMetricTraits =
            DefaultImageToImageMetricTraitsv4<TFixedImage, TMovingImage, TVirtualImage, TInternalComputationValueType>>
class ITK_TEMPLATE_EXPORT GigaRegLocalNormalizedCorrelationImageToImageMetricv4
  : public GigaRegImageToImageMetricv4<TFixedImage, TMovingImage, TVirtualImage, TInternalComputationValueType,
                                       TMetricTraits>
{
public:
  ITK_DISALLOW_COPY_AND_MOVE(GigaRegLocalNormalizedCorrelationImageToImageMetricv4);
  using Self = GigaRegLocalNormalizedCorrelationImageToImageMetricv4;
  using Superclass = GigaRegImageToImageMetricv4<TFixedImage, TMovingImage, TVirtualImage,
                                                 TInternalComputationValueType, TMetricTraits>;
  using Pointer = SmartPointer<Self>;
  using ConstPointer = SmartPointer<const Self>;
  itkNewMacro(Self);
  itkTypeMacro(GigaRegLocalNormalizedCorrelationImageToImageMetricv4, GigaRegImageToImageMetricv4);

protected:
  GigaRegLocalNormalizedCorrelationImageToImageMetricv4() { this->SetMetricKind(GR_METRIC_LNCC); }
  ~GigaRegLocalNormalizedCorrelationImageToImageMetricv4() override = default;
};
} // namespace itk

#endif
