#include "elxGigaRegResampler.h"
elxInstallMacro( GigaRegResampler );
