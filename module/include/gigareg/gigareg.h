/* GigaReg public C API: umbrella header. */
#ifndef GIGAREG_H
#define GIGAREG_H
#include "gigareg/status.h"
#include "gigareg/image.h"
#include "gigareg/transform.h"
#include "gigareg/backend.h"
#include "gigareg/io.h"
#include "gigareg/params.h"
#include "gigareg/comm.h"
#include "gigareg/registration.h"
#include "gigareg/memory_plan.h"
#include "gigareg/grid_parallel.h"
#endif
