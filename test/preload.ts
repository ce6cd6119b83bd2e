/**
 * Runs before any test file (bunfig.toml `[test] preload`): the in-process ink tests read plain
 * text frames, and chalk reads FORCE_COLOR when it loads, so a runner's FORCE_COLOR must not
 * reach it. Tests that want colour set it for the processes they start.
 */
delete process.env.FORCE_COLOR;
