# ITK remote-module description, read when this repository is placed under an
# ITK source tree (Modules/Remote/GigaReg) and configured with
# Module_GigaReg=ON. The standalone build (find_package(ITK)) does not read it:
# see cmake/GigaRegITK.cmake.
set(DOCUMENTATION "ITK classes over the GigaReg C registration core: the staged
rigid / affine / greedy / SyN registration as a ProcessObject with a
CompositeTransform output, LNCC and Mattes MI ImageToImageMetricv4 drop-ins,
linear interpolation and resampling (with an object-factory override of
ResampleImageFilter), on the core's CPU or CUDA backend.")

itk_module(GigaReg
  DEPENDS
    ITKCommon
    ITKImageFunction
    ITKImageGrid
    ITKTransform
    ITKDisplacementField
    ITKMetricsv4
    ITKOptimizersv4
    ITKRegistrationMethodsv4
    ITKSpatialObjects
  TEST_DEPENDS
    ITKTestKernel
    ITKIOImageBase
    ITKIONIFTI
    ITKIOMeta
    ITKIOTransformBase
    ITKIOTransformInsightLegacy
  DESCRIPTION
    "${DOCUMENTATION}"
  EXCLUDE_FROM_DEFAULT
)
