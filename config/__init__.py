"""The stack configuration: one typed model (config.model), its value checks (config.checks), the rules
between keys (config.rules), and the reader that validates what the Pulumi CLI hands the program."""

from config.checks import CLUSTER_PROFILE
from config.model import StackConfig, profile_for_stack
from config.problems import PROJECT_NAME, ConfigError
from config.reader import REMOVED_KEYS, load

__all__ = ["CLUSTER_PROFILE", "PROJECT_NAME", "REMOVED_KEYS", "ConfigError", "StackConfig", "load", "profile_for_stack"]
