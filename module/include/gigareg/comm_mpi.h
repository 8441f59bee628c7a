/* MPI communicator constructor; include only in code built with MPI
 * (GIGAREG_HAVE_MPI). gigareg/comm.h has the MPI entry points that need no mpi.h. */
#ifndef GIGAREG_COMM_MPI_H
#define GIGAREG_COMM_MPI_H
#include <mpi.h>
#include "gigareg/comm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Wraps a duplicate of `comm` (so library traffic never matches the caller's
 * messages); MPI must be initialised. Errors on the duplicate return codes
 * (MPI_ERRORS_RETURN) that surface as GR_ERR_COMM with MPI's message. */
gr_status gr_comm_mpi_create(MPI_Comm comm, gr_comm **out);

#ifdef __cplusplus
}
#endif
#endif
