"""One module per `firebreak` subcommand; firebreak.cli wires them."""
