/* GigaRegImageRegistrationMethod and the gigareg CLI on the same files with the
 * same elastix parameter file: the same rigid parameters and centre. */
#include "itkGigaRegTestCommon.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "itkGigaRegImageRegistrationMethod.h"
#include "itkImageFileWriter.h"

namespace
{
using namespace grtest;

/* Numbers of "(Key n n n)" in an elastix TransformParameters file. */
std::vector<double>
ReadKey(const std::string & path, const std::string & key)
{
  std::ifstream       in(path);
  std::string         line;
  std::vector<double> v;
  while (std::getline(in, line))
  {
    if (line.rfind("(" + key + " ", 0) != 0)
      continue;
    std::istringstream ss(line.substr(key.size() + 2));
    double             x;
    while (ss >> x)
      v.push_back(x);
    break;
  }
  return v;
}

void
Write(const ImageType * img, const std::string & path)
{
  auto w = itk::ImageFileWriter<ImageType>::New();
  w->SetInput(img);
  w->SetFileName(path);
  w->Update();
}
} // namespace

int
itkGigaRegCLITest(int, char *[])
{
#ifndef GR_GIGAREG_CLI
  std::printf("the gigareg CLI is not part of this build\n");
  return 77;
#else
  const std::string cli = GR_GIGAREG_CLI;
  if (!std::ifstream(cli))
  {
    std::printf("%s not built\n", cli.c_str());
    return 77;
  }
  const std::string f = TmpPath("cli_fixed.nii.gz"), m = TmpPath("cli_moving.nii.gz"), p = TmpPath("cli_rigid.txt"),
                    out = TmpPath("cli_out");
  Write(ReadShrunk("chris_t1.nii.gz", 2, 2, 2), f);
  Write(ReadShrunk("chris_PD.nii.gz", 2, 2, 1), m);
  {
    std::ofstream pf(p);
    pf << "(Registration \"MultiResolutionRegistration\")\n(Transform \"EulerTransform\")\n"
          "(Metric \"AdvancedMattesMutualInformation\")\n(NumberOfHistogramBins 32)\n"
          "(Optimizer \"RegularStepGradientDescent\")\n(NumberOfResolutions 2)\n"
          "(ImagePyramidSchedule 4 4 4 2 2 2)\n(MaximumNumberOfIterations 60 30)\n"
          "(AutomaticTransformInitialization \"true\")\n"
          "(AutomaticTransformInitializationMethod \"CenterOfGravity\")\n(WriteResultImage \"false\")\n";
  }
  const std::string cmd = "rm -rf '" + out + "' && '" + cli + "' -f '" + f + "' -m '" + m + "' -p '" + p + "' -out '" +
                          out + "' -q -threads 2";
  GR_CHECK(std::system(cmd.c_str()) == 0, "CLI run failed: %s", cmd.c_str());
  const auto cliParams = ReadKey(out + "/TransformParameters.0.txt", "TransformParameters");
  const auto cliCenter = ReadKey(out + "/TransformParameters.0.txt", "CenterOfRotationPoint");
  GR_CHECK(cliParams.size() == 6 && cliCenter.size() == 3, "TransformParameters.0.txt not parsed");

  RegisterIO();
  auto rf = itk::ImageFileReader<ImageType>::New();
  rf->SetFileName(f);
  auto rm = itk::ImageFileReader<ImageType>::New();
  rm->SetFileName(m);
  auto method = itk::GigaRegImageRegistrationMethod<ImageType>::New();
  method->SetFixedImage(rf->GetOutput());
  method->SetMovingImage(rm->GetOutput());
  method->AddStageFromParameterFile(p);
  method->SetDevice("cpu");
  method->SetNumberOfThreads(2);
  method->Update();
  const gr_stage_result & r = method->GetStageResults().at(0);
  double                  dAngle = 0.0, dMm = 0.0;
  for (int i = 0; i < 3; ++i)
  {
    dAngle = std::max(dAngle, std::abs(r.params[i] - cliParams[i]));
    dMm = std::max(dMm, std::abs(r.params[3 + i] - cliParams[3 + i]));
    dMm = std::max(dMm, std::abs(r.center[i] - cliCenter[i]));
  }
  std::printf("ITK method vs gigareg CLI (same files, same parameter file): max |d angle| %.3g rad (tol 1e-6), "
              "max |d translation or centre| %.3g mm (tol 1e-5); CLI p = [%.6f %.6f %.6f %.4f %.4f %.4f]\n",
              dAngle, dMm, cliParams[0], cliParams[1], cliParams[2], cliParams[3], cliParams[4], cliParams[5]);
  GR_CHECK(dAngle <= 1e-6 && dMm <= 1e-5, "ITK method and CLI disagree");
  return EXIT_SUCCESS;
#endif
}
