// AMPL driver for IPOPT, built by mpdopf_pyomo.solver_build: `ipopt problem.nl -AMPL [options]` reads the
// .nl file, solves it and writes problem.sol. All the AMPL work (reading the .nl file, AMPL-style options,
// suffixes, writing the .sol file) is Ipopt's AmplTNLP, linked from Debian's libipoptamplinterface.a; this
// file only wires it to an IpoptApplication, as Ipopt's own ampl_ipopt does.
#include <cstdlib>
#include <dlfcn.h>
#include <iostream>  // static iostream initialisation for the archive's code (compiled with a newer g++)

#include "AmplTNLP.hpp"
#include "IpIpoptApplication.hpp"

using namespace Ipopt;

// casadi's OpenBLAS runs one thread per core. MUMPS calls BLAS on many tiny blocks, where the extra threads
// only add system time (and wall time on a busy machine): use one thread unless the user set a number.
static void single_thread_blas()
{
   if( std::getenv("OPENBLAS_NUM_THREADS") || std::getenv("OMP_NUM_THREADS") )
      return;
   typedef void (*set_threads_t)(int);
   set_threads_t set_threads = reinterpret_cast<set_threads_t>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
   if( set_threads )
      set_threads(1);
}

int main(int, char** argv)
{
   single_thread_blas();
   SmartPtr<IpoptApplication> app = IpoptApplicationFactory();
   app->RethrowNonIpoptException(false);
   // First initialisation: create the journalist, read no options file yet.
   if( app->Initialize("") != Solve_Succeeded )
   {
      std::cerr << "ipopt: first initialisation failed" << std::endl;
      return 100;
   }
   // Suffixes Pyomo and AMPL may send: scaling factors, and bound multipliers for warm starts.
   SmartPtr<AmplSuffixHandler> suffixes = new AmplSuffixHandler();
   const AmplSuffixHandler::Suffix_Source sources[] = {AmplSuffixHandler::Variable_Source,
                                                       AmplSuffixHandler::Constraint_Source,
                                                       AmplSuffixHandler::Objective_Source};
   for( AmplSuffixHandler::Suffix_Source source : sources )
      suffixes->AddAvailableSuffix("scaling_factor", source, AmplSuffixHandler::Number_Type);
   for( const char* name : {"ipopt_zL_out", "ipopt_zU_out", "ipopt_zL_in", "ipopt_zU_in"} )
      suffixes->AddAvailableSuffix(name, AmplSuffixHandler::Variable_Source, AmplSuffixHandler::Number_Type);
   // Reads the .nl file and the options given on the command line or in the ipopt_options variable;
   // the last argument lets Ctrl-C stop the solve cleanly.
   SmartPtr<TNLP> nlp = new AmplTNLP(ConstPtr(app->Jnlst()), app->RegOptions(), app->Options(), argv, suffixes,
                                     false, NULL, NULL, NULL, NULL, NULL, true);
   // Second initialisation: ipopt.opt and output options now apply.
   if( app->Initialize() != Solve_Succeeded )
   {
      std::cerr << "ipopt: second initialisation failed" << std::endl;
      return 101;
   }
   app->OptimizeTNLP(nlp);  // AmplTNLP::finalize_solution writes the .sol file, whatever the outcome
   return 0;
}
