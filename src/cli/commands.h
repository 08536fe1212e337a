/* The tern subcommands that live outside main.c. Each returns the exit status. */
#ifndef TERN_CLI_COMMANDS_H
#define TERN_CLI_COMMANDS_H

int cmd_serve(int argc, char **argv);
int cmd_infer(int argc, char **argv);
int cmd_bench(int argc, char **argv);

#endif
