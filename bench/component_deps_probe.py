"""Probe program: does the Python SDK expand `depends_on=[component]` into the component's children?

`bench.bench` runs it under tools/mock_engine.py and looks at what `consumer` sends as `dependencies`.
"""

import pulumi
import pulumi_random as random


class Group(pulumi.ComponentResource):
    def __init__(self, name: str, opts=None):
        super().__init__("bench:index:Group", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        random.RandomPassword(f"{name}-a", length=8, opts=child)
        inner = Inner(f"{name}-inner", opts=child)
        self.inner = inner
        self.register_outputs({})


class Inner(pulumi.ComponentResource):
    def __init__(self, name: str, opts=None):
        super().__init__("bench:index:Inner", name, None, opts)
        random.RandomPassword(f"{name}-b", length=8, opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({})


group = Group("group")
random.RandomPassword("consumer", length=8, opts=pulumi.ResourceOptions(depends_on=[group]))
