"""medseg.losses"""
