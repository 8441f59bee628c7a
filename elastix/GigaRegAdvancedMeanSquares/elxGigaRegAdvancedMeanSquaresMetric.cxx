#include "elxGigaRegAdvancedMeanSquaresMetric.h"
elxInstallMacro( GigaRegAdvancedMeanSquaresMetric );
