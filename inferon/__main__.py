from inferon.cli import main

raise SystemExit(main())
