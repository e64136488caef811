"""The `preread` subcommands, one module each: ``add_parser(sub)`` declares the subcommand's
arguments and ``run(args)`` carries it out. A subcommand imports the packages it drives (serving,
training, evaluation, bench) inside ``run``, so that `preread --help` and the other subcommands do
not pay for them."""
