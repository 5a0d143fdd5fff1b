"""medseg.transforms"""
