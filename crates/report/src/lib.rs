//! HTML reports over plain numbers (see the reports issue).
