from wenzheng.cli import main

raise SystemExit(main())
