from reconciler.cli.launch import main

main()
