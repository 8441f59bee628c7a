#include "itkGigaRegImageFilterFactory.h"

#include <typeinfo>

#include "itkGigaRegResampleImageFilter.h"
#include "itkVersion.h"

namespace itk
{
namespace
{
using FloatImage = Image<float, 3>;
using BaseResample = ResampleImageFilter<FloatImage, FloatImage, double, double>;
using GigaResample = GigaRegResampleImageFilter<FloatImage, FloatImage>;
} // namespace

GigaRegImageFilterFactory::GigaRegImageFilterFactory()
{
  // ITK's New() asks the factories by typeid name; the override is keyed the same way.
  this->RegisterOverride(typeid(BaseResample).name(), typeid(GigaResample).name(),
                         "GigaReg ResampleImageFilter (float, 3D) on the C core", true,
                         CreateObjectFunction<GigaResample>::New());
}

const char *
GigaRegImageFilterFactory::GetITKSourceVersion() const
{
  return ITK_SOURCE_VERSION;
}

const char *
GigaRegImageFilterFactory::GetDescription() const
{
  return "GigaReg: ITK filters on the GigaReg C core";
}

void
GigaRegImageFilterFactory::RegisterOneFactory()
{
  for (auto * f : ObjectFactoryBase::GetRegisteredFactories())
  {
    if (dynamic_cast<GigaRegImageFilterFactory *>(f))
    {
      return;
    }
  }
  auto factory = GigaRegImageFilterFactory::New();
  ObjectFactoryBase::RegisterFactory(factory, ObjectFactoryEnums::InsertionPosition::INSERT_AT_FRONT);
}
} // namespace itk
