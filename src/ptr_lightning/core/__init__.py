"""What every layer shares and nothing of the package is imported by: names, settings rules,
errors, the config keys' roles, the pseudo-task switch's rules, where the configs are, atomic
files."""
