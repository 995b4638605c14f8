"""Incidents (事件/案卷): catalogue, intake from every channel, the closed loop, queries, Open311."""
