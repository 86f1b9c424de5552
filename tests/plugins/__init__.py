"""Throwaway plugins the tests load by module path (never installed, never auto-discovered)."""
