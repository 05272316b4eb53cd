// AMPL driver for IPOPT, built by mpdopf_pyomo.solver_build: `ipopt problem.nl -AMPL [options]` reads the
// .nl file, solves it and writes problem.sol. All the AMPL work (reading the .nl file, AMPL-style options,
// suffixes, writing the .sol file) is Ipopt's AmplTNLP, linked from Debian's libipoptamplinterface.a; this
// file only wires it to an IpoptApplication, as Ipopt's own ampl_ipopt does.
#include <iostream>  // static iostream initialisation for the archive's code (compiled with a newer g++)

#include "AmplTNLP.hpp"
#include "IpIpoptApplication.hpp"

using namespace Ipopt;

int main(int, char** argv)
{
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
