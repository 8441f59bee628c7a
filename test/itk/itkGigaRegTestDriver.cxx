/* ITK test-driver style: one executable, argv[1] selects the test. */
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "itkMacro.h"

int itkGigaRegLNCCMetricTest(int, char *[]);
int itkGigaRegMattesMetricTest(int, char *[]);
int itkGigaRegResampleTest(int, char *[]);
int itkGigaRegFactoryTest(int, char *[]);
int itkGigaRegRegistrationMethodTest(int, char *[]);
int itkGigaRegMetricInRegistrationTest(int, char *[]);
int itkGigaRegSyNTest(int, char *[]);
int itkGigaRegCLITest(int, char *[]);

namespace
{
struct Entry
{
  const char * name;
  int (*fn)(int, char *[]);
};
const Entry tests[] = {
  { "itkGigaRegLNCCMetricTest", itkGigaRegLNCCMetricTest },
  { "itkGigaRegMattesMetricTest", itkGigaRegMattesMetricTest },
  { "itkGigaRegResampleTest", itkGigaRegResampleTest },
  { "itkGigaRegFactoryTest", itkGigaRegFactoryTest },
  { "itkGigaRegRegistrationMethodTest", itkGigaRegRegistrationMethodTest },
  { "itkGigaRegMetricInRegistrationTest", itkGigaRegMetricInRegistrationTest },
  { "itkGigaRegSyNTest", itkGigaRegSyNTest },
  { "itkGigaRegCLITest", itkGigaRegCLITest },
};
} // namespace

int
main(int argc, char * argv[])
{
  if (argc < 2)
  {
    std::cerr << "usage: " << argv[0] << " <test name> [args]\navailable:\n";
    for (const auto & t : tests)
      std::cerr << "  " << t.name << "\n";
    return EXIT_FAILURE;
  }
  for (const auto & t : tests)
  {
    if (std::strcmp(argv[1], t.name) == 0)
    {
      try
      {
        return t.fn(argc - 1, argv + 1);
      }
      catch (const itk::ExceptionObject & e)
      {
        std::cerr << "ITK exception: " << e << std::endl;
        return EXIT_FAILURE;
      }
      catch (const std::exception & e)
      {
        std::cerr << "exception: " << e.what() << std::endl;
        return EXIT_FAILURE;
      }
    }
  }
  std::cerr << "unknown test " << argv[1] << std::endl;
  return EXIT_FAILURE;
}
