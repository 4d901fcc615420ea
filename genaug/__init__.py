"""genaug: does adding labeled synthetic images make my image classifier better?"""

__version__ = "0.1.0"
