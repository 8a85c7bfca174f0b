from approval_server.entry.cli import main

main()
