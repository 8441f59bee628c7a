#include "elxGigaRegLocalNormalizedCorrelationMetric.h"
elxInstallMacro( GigaRegLocalNormalizedCorrelationMetric );
