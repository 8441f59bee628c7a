/* Shared helpers of the ITK-layer tests (one driver, several tests). */
#ifndef itkGigaRegTestCommon_h
#define itkGigaRegTestCommon_h

#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "itkDisplacementFieldTransform.h"
#include "itkImage.h"
#include "itkImageRegionIteratorWithIndex.h"
#include "itkImageFileReader.h"
#include "itkImageMaskSpatialObject.h"
#include "itkMetaImageIOFactory.h"
#include "itkNiftiImageIOFactory.h"
#include "itkShrinkImageFilter.h"
#include "itkTxtTransformIOFactory.h"

namespace grtest
{
using ImageType = itk::Image<float, 3>;
using MaskImageType = itk::Image<unsigned char, 3>;
using MaskType = itk::ImageMaskSpatialObject<3>;

/* Explicit registration: the standalone build does not generate ITK's
 * factory-registration headers (that needs UseITK.cmake, which would touch the
 * C core's compile flags). */
inline void
RegisterIO()
{
  static bool done = false;
  if (!done)
  {
    itk::NiftiImageIOFactory::RegisterOneFactory();
    itk::MetaImageIOFactory::RegisterOneFactory();
    itk::TxtTransformIOFactory::RegisterOneFactory();
    done = true;
  }
}

inline std::string
DataPath(const char * name)
{
  return std::string(GR_TEST_DATA_DIR) + "/" + name;
}

inline std::string
TmpPath(const char * name)
{
  return std::string(GR_ITK_TEST_TMP) + "/" + name;
}

using FieldTransformType = itk::DisplacementFieldTransform<double, 3>;
using FieldType = FieldTransformType::DisplacementFieldType;

/* A displacement field on the grid of `like`: d(x) = f(x), x physical. */
template <class F>
inline FieldType::Pointer
MakeField(const ImageType * like, F f)
{
  auto field = FieldType::New();
  field->CopyInformation(like);
  field->SetRegions(like->GetBufferedRegion());
  field->Allocate();
  itk::ImageRegionIteratorWithIndex<FieldType> it(field, field->GetBufferedRegion());
  for (; !it.IsAtEnd(); ++it)
  {
    ImageType::PointType p;
    field->TransformIndexToPhysicalPoint(it.GetIndex(), p);
    it.Set(f(p));
  }
  return field;
}

/* Real data, shrunk (no smoothing: the point is speed, both sides see the same image). */
inline ImageType::Pointer
ReadShrunk(const char * name, unsigned int fx, unsigned int fy, unsigned int fz)
{
  RegisterIO();
  auto reader = itk::ImageFileReader<ImageType>::New();
  reader->SetFileName(DataPath(name));
  auto shrink = itk::ShrinkImageFilter<ImageType, ImageType>::New();
  shrink->SetInput(reader->GetOutput());
  shrink->SetShrinkFactor(0, fx);
  shrink->SetShrinkFactor(1, fy);
  shrink->SetShrinkFactor(2, fz);
  shrink->Update();
  ImageType::Pointer out = shrink->GetOutput();
  out->DisconnectPipeline();
  return out;
}

/* Head mask: voxels above a fraction of the image maximum. */
inline MaskType::Pointer
ThresholdMask(const ImageType * img, double fraction)
{
  auto m = MaskImageType::New();
  m->CopyInformation(img);
  m->SetRegions(img->GetBufferedRegion());
  m->Allocate();
  float mx = 0.0f;
  const size_t n = img->GetBufferedRegion().GetNumberOfPixels();
  for (size_t i = 0; i < n; ++i)
    mx = std::max(mx, img->GetBufferPointer()[i]);
  for (size_t i = 0; i < n; ++i)
    m->GetBufferPointer()[i] = img->GetBufferPointer()[i] > fraction * mx ? 1 : 0;
  auto so = MaskType::New();
  so->SetImage(m);
  so->Update();
  return so;
}

/* Deterministic uniform noise of amplitude fraction * max: removes the exactly
 * flat (zero) background, where ANTS counts a window as cc = 1 and the core as 0. */
inline void
AddNoise(ImageType * img, double fraction, unsigned seed)
{
  const size_t n = img->GetBufferedRegion().GetNumberOfPixels();
  float        mx = 0.0f;
  for (size_t i = 0; i < n; ++i)
    mx = std::max(mx, img->GetBufferPointer()[i]);
  unsigned s = seed;
  for (size_t i = 0; i < n; ++i)
  {
    s = s * 1664525u + 1013904223u;
    img->GetBufferPointer()[i] += static_cast<float>(fraction * mx * (s >> 8) / 16777216.0);
  }
}

inline double
Cosine(const itk::Array<double> & a, const itk::Array<double> & b)
{
  double ab = 0, aa = 0, bb = 0;
  for (unsigned int i = 0; i < a.GetSize(); ++i)
  {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / std::sqrt(aa * bb + 1e-300);
}

} // namespace grtest

#define GR_CHECK(cond, ...)                                                                                  \
  do                                                                                                         \
  {                                                                                                          \
    if (!(cond))                                                                                             \
    {                                                                                                        \
      std::fprintf(stderr, "FAILED %s:%d: %s: ", __FILE__, __LINE__, #cond);                                 \
      std::fprintf(stderr, __VA_ARGS__);                                                                     \
      std::fprintf(stderr, "\n");                                                                            \
      return EXIT_FAILURE;                                                                                   \
    }                                                                                                        \
  } while (0)

#endif
