from streamctl.cli_fast import main

main()
