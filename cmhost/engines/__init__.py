"""Engine drivers and what they share: PKI, attribute rules, user data, starter kits."""
