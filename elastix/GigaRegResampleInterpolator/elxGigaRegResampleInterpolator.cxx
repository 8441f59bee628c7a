#include "elxGigaRegResampleInterpolator.h"
elxInstallMacro( GigaRegResampleInterpolator );
