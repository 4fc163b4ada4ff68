from jobsd.cli import main

raise SystemExit(main())
