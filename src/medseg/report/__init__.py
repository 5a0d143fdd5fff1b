"""medseg.report"""
