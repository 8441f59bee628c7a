/*=========================================================================
 * GigaReg ITK layer: object factory that makes ITK's own New() return the
 * GigaReg implementations (as ITK-GPU and RTK do for their filters).
 *=========================================================================*/
#ifndef itkGigaRegImageFilterFactory_h
#define itkGigaRegImageFilterFactory_h

#include "itkObjectFactoryBase.h"

namespace itk
{
/** \class GigaRegImageFilterFactory
 * \brief After RegisterOneFactory(), ResampleImageFilter<Image<float,3>,
 * Image<float,3>>::New() (double precision, ITK's defaults) returns a
 * GigaRegResampleImageFilter. Code that names the base class keeps working:
 * unsupported configurations fall back to the base implementation.
 * \ingroup GigaReg
 */
class GigaRegImageFilterFactory : public ObjectFactoryBase
{
public:
  ITK_DISALLOW_COPY_AND_MOVE(GigaRegImageFilterFactory);
  using Self = GigaRegImageFilterFactory;
  using Superclass = ObjectFactoryBase;
  using Pointer = SmartPointer<Self>;
  using ConstPointer = SmartPointer<const Self>;

  const char *
  GetITKSourceVersion() const override;
  const char *
  GetDescription() const override;

  itkFactorylessNewMacro(Self);
  itkTypeMacro(GigaRegImageFilterFactory, ObjectFactoryBase);

  /** Registers one instance (idempotent). */
  static void
  RegisterOneFactory();

protected:
  GigaRegImageFilterFactory();
  ~GigaRegImageFilterFactory() override = default;
};

using GigaRegFactory = GigaRegImageFilterFactory;
} // namespace itk

#endif
