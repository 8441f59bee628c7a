/* GigaReg elastix components under mpirun: one MPI world for the whole elastix
 * process, and the per-rank output folders (docs/elastix.md, "MPI ranks").
 *
 * `mpirun -np R elastix ...` starts R identical elastix processes. Each reads the
 * same images and parameter file and runs the same optimizer; the GigaReg metrics
 * split every evaluation's fixed voxels over the ranks (ShardedMetric) and reduce
 * value and derivative exactly, so every rank holds the same parameters after every
 * iteration and the result equals the one-process run with as many shards.
 *
 * MPI is initialised by the first metric that needs it (elastix's main does not
 * know about MPI) and finalised when the process exits. Not launched by mpirun (or
 * a build without MPI): size 1, no communicator, nothing changes. */
#ifndef GIGAREG_ELX_MPI_H
#define GIGAREG_ELX_MPI_H

#include <fstream>
#include <string>
#include <sys/stat.h>

#include "elxMacro.h"
#include "xoutmain.h"

extern "C" {
#include "gigareg/comm.h"
#include "gigareg/status.h"
}

namespace elastix
{

class GigaRegMPI
{
public:
  gr_comm * comm = nullptr; /* nullptr: one process */
  int       rank = 0, size = 1;
  int       localRank = 0;  /* rank among the ranks of this host: picks the GPU */
  std::string error;        /* why MPI could not start (the metric reports it) */

  GigaRegMPI()
  {
    if( !gr_comm_launched_by_mpi() ) { return; }
    if( !gr_comm_mpi_available() )
    {
      error = "elastix was started by mpirun, but this GigaReg build has no MPI (rebuild with -DGIGAREG_USE_MPI=ON)";
      return;
    }
    const gr_status s = gr_comm_mpi_world( nullptr, nullptr, &comm );
    if( s != GR_OK )
    {
      error = std::string( "MPI initialisation: " ) + gr_strerror( s ) + " " + gr_last_error();
      comm  = nullptr;
      return;
    }
    rank = comm->ops->rank( comm );
    size = comm->ops->size( comm );
    const int lr = gr_comm_local_rank();
    localRank = lr >= 0 ? lr : rank;
  }
  GigaRegMPI( const GigaRegMPI & ) = delete;
  GigaRegMPI & operator=( const GigaRegMPI & ) = delete;

  ~GigaRegMPI()
  {
    if( comm )
    {
      comm->ops->destroy( comm );
      gr_comm_mpi_finalize();
    }
  }

  /** Every rank stops (MPI_Abort) instead of waiting forever in the next collective for a
   * rank that failed alone; the message names the problem. */
  void Abort( const std::string & msg ) const
  {
    if( comm ) { comm->ops->abort( comm, GR_ERR_COMM, msg.c_str() ); }
  }
};

/** The process's MPI state; initialised on first use (an inline function's static: one
 * instance in the executable, whichever component library asks first). */
inline GigaRegMPI & gigaregMPI()
{
  static GigaRegMPI m;
  return m;
}

/** Ranks > 0 compute the same registration as rank 0: their TransformParameters, result
 * images and log go to <-out>/rank<r>/ (elastix's own files in -out are rank 0's), and
 * they print nothing on the console but errors. Called from the metric's
 * BeforeRegistration: before elastix opens IterationInfo files or writes
 * TransformParameters, both through the "-out" argument. */
template< class TConfiguration >
void gigaregRankOutputs( TConfiguration * config )
{
  const GigaRegMPI & mpi = gigaregMPI();
  static bool        done = false;
  if( done || !mpi.comm ) { return; }
  done = true;
  if( mpi.rank == 0 )
  {
    mpi.comm->ops->barrier( mpi.comm ); /* the other ranks' part of elastix.log is on disk */
    return;
  }
  /* Rank 0's elastix.log is opened by every rank's main: what this rank wrote there (the
   * same header) must reach the file now, not when the process exits, when it would land
   * over rank 0's later lines. */
  const auto & outs = xl::xout[ "standard" ].GetCOutputs();
  const auto   shared = outs.find( "log" );
  if( shared != outs.end() && shared->second ) { shared->second->flush(); }
  mpi.comm->ops->barrier( mpi.comm );
  std::string out = config->GetCommandLineArgument( "-out" );
  if( !out.empty() && out.back() != '/' ) { out += '/'; }
  out += "rank" + std::to_string( mpi.rank ) + "/";
  mkdir( out.c_str(), 0777 ); /* exists already: fine; a real failure shows when elastix writes */
  config->SetCommandLineArgument( "-out", out );
  /* this rank's log: its own file instead of rank 0's elastix.log (opened by elastix's main
   * before any component existed: only the command-line header went there). The console
   * output becomes a stream without a buffer (writes do nothing): elastix looks the "cout"
   * output up by name (ProgressCommand), so it must stay. Errors still reach the console. */
  static std::ofstream log( out + "elastix.log" );
  static std::ostream  quiet( nullptr );
  /* the root's outputs: cells made later (the TransformParameters writer's "transpar") copy them */
  xl::xout.RemoveOutput( "log" );
  xl::xout.AddOutput( "log", &log );
  xl::xout.RemoveOutput( "cout" );
  xl::xout.AddOutput( "cout", &quiet );
  for( const char * cell : { "standard", "warning", "error", "logonly", "coutonly", "iteration" } )
  {
    const std::string c( cell );
    if( c != "coutonly" )
    {
      xl::xout[ cell ].RemoveOutput( "log" );
      xl::xout[ cell ].AddOutput( "log", &log );
    }
    if( c != "error" && c != "logonly" )
    {
      xl::xout[ cell ].RemoveOutput( "cout" );
      xl::xout[ cell ].AddOutput( "cout", &quiet );
    }
  }
}

} // end namespace elastix

#endif
